"""The answers of the example's small shop API: the same bytes whether a server or the function gives them."""

import json

ITEMS = [
    {"id": 1, "name": "green tea", "price": 12},
    {"id": 2, "name": "oolong", "price": 18},
    {"id": 3, "name": "pu-erh", "price": 26},
]


def answer(method, path):
    """(status, JSON body text) for a request."""
    if method not in ("GET", "HEAD"):
        return 405, json.dumps({"error": "method not allowed", "method": method})
    if path in ("/", "/api/hello"):
        return 200, json.dumps({"message": "Hello CLB"})
    if path == "/api/items":
        return 200, json.dumps({"items": ITEMS})
    if path.startswith("/api/items/"):
        wanted = path[len("/api/items/"):]
        for item in ITEMS:
            if str(item["id"]) == wanted:
                return 200, json.dumps(item)
    return 404, json.dumps({"error": "not found", "path": path})
