#!/usr/bin/env python3
"""A forward HTTP proxy for the transport specs, counting what goes through it.

Listens on 127.0.0.1, port 0; prints "PORT <port> PID <pid>" on stdout, then serves
until killed. HTTP/1.1, one thread per connection.

  GET http://host:port/path ...   (absolute form) forwarded to host:port, the answer
                                  relayed; counted in "requests", the URL in "urls"
  CONNECT host:port               a tunnel (HTTPS through the proxy); counted in "connects"
  GET /_proxy                     (origin form: asked of the proxy itself)
                                  {"requests": n, "connects": n, "urls": [...]}
  POST /_proxy/reset              zeroes the counts
"""
import http.client
import json
import os
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOCK = threading.Lock()
STATE = {"requests": 0, "connects": 0, "urls": []}
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="application/json"):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if not self.path.startswith("http://"):
            if self.path == "/_proxy":
                with LOCK:
                    return self._reply(200, json.dumps(STATE))
            if self.path == "/_proxy/reset":
                with LOCK:
                    STATE.update(requests=0, connects=0, urls=[])
                return self._reply(204, b"")
            return self._reply(400, "not a proxy request", "text/plain")
        with LOCK:
            STATE["requests"] += 1
            STATE["urls"].append(self.path)
        u = urlsplit(self.path)
        path = u.path + ("?" + u.query if u.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            con = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
            con.request(self.command, path or "/", body=body, headers=headers)
            resp = con.getresponse()
            data = resp.read()
        except OSError as e:
            return self._reply(502, "proxy: %s" % e, "text/plain")
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        con.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        with LOCK:
            STATE["connects"] += 1
            STATE["urls"].append("CONNECT " + self.path)
        try:
            up = socket.create_connection((host, int(port)), timeout=30)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        socks = [self.connection, up]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            up.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write("PORT %d PID %d\n" % (srv.server_address[1], os.getpid()))
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
