#!/usr/bin/env python3
"""The daily business: a plain HTTP service with the shop's catalogue. python3 server.py [--host H] [--port P]"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CATALOGUE = json.dumps({"items": [{"id": 1, "name": "green tea", "price": 12}, {"id": 2, "name": "oolong", "price": 18}]})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY the body of each answer after the first on a
    # kept-alive connection waits for the balancer's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server_version = "daily"

    def do_GET(self):
        data = (b"ok" if self.path == "/health" else CATALOGUE.encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", "server")
        self.end_headers()
        self.wfile.write(data)

    do_HEAD = do_GET

    def log_message(self, format, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"daily server listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
