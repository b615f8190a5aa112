#!/usr/bin/env python3
"""The shop API as a plain HTTP service (the "CVM" side): python3 server.py [--host H] [--port P] [--name N].

It answers exactly what the function in function/ answers (both use function/shop.py), plus `/health` for the
load balancer's health checks. `X-Served-By` names who answered.
"""

import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "function"))
from shop import answer  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY the body of each answer after the first on a
    # kept-alive connection waits for the balancer's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server_version = "shop"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, body = 200, "ok"
        else:
            status, body = answer(self.command, path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def log_message(self, format, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away mid-answer is not the server's error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--name", default="server")
    args = parser.parse_args()
    server = Server((args.host, args.port), Handler)
    server.name = args.name
    print(f"shop server {args.name} listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
