#!/usr/bin/env python3
"""An autodiscover root that only redirects (RootURL.md step 5), for the
discovery specs. Usage: redirect_peer.py TARGET_URL. Listens on 127.0.0.1,
port 0, prints "PORT <port>", answers every GET with a `redirect` link."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"_links": {"self": {"href": self.path},
                                      "redirect": {"href": TARGET}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
