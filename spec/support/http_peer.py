#!/usr/bin/env python3
"""Scripted HTTP/1.1 test peer for the transport and event-channel specs.

Listens on 127.0.0.1 (or the address of "--bind ADDR", e.g. 127.0.0.2), port 0;
prints "PORT <port> PID <pid> ADDR <address>" on stdout, then serves until killed.
Keep-alive on (HTTP/1.1), one thread per connection.
With "--tls CERT KEY" it serves HTTPS with that certificate.

  /echo           any method: 200 JSON {method, path, headers, body}; query:
                  status=N (response status), delay=S (sleep first), size=N (N bytes
                  of 'x' instead of JSON), chunked=1 (with size: no Content-Length)
                  always sends "X-Multi: a", "X-Multi: b" and "Location: /where";
                  hsize=N adds a header "X-Big" of N bytes, hlines=N adds N headers
                  "X-Line-<i>" of 1000 bytes each
  /whoami         {"address": the address this peer listens on, "host": the Host header}
  /drop           closes the connection without answering
  /stats          {"connections": n, "requests": n}
  /app/events?ack=N   the event channel: batch N, _links.next = /app/events?ack=N+1,
                  unless a scripted action says otherwise
  POST /_script?app=/app1   JSON list of actions, queued for the events requests of
                  that app (/app1/events); each applies to one request:
                  {"drop": true} | {"status": 503, "body": "...", "ctype": "..."} |
                  {"delay": S} | {"link": "resync"|"resume", "href": "..."} |
                  {"nolinks": true} | {"garbage": true}
  POST /_token    body = the Authorization value events requests need ("" = any)
  POST /_reset    clears script, log and token
  GET  /_log?app=/app1   JSON list of that app's events requests:
                  {path, t (time.monotonic), auth, action}
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

LOCK = threading.Lock()
STATE = {"connections": 0, "requests": 0, "script": {}, "log": [], "token": ""}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with LOCK:
            STATE["connections"] += 1

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype="application/json", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        with LOCK:
            STATE["requests"] += 1
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        body = self._body()
        if u.path == "/echo":
            return self._echo(q, body)
        if u.path == "/drop":
            self.close_connection = True
            return None
        if u.path == "/whoami":
            return self._send(200, json.dumps({"address": self.server.server_address[0],
                                               "host": self.headers.get("Host")}))
        if u.path == "/stats":
            with LOCK:
                s = {"connections": STATE["connections"], "requests": STATE["requests"]}
            return self._send(200, json.dumps(s))
        if u.path == "/_script":
            with LOCK:
                STATE["script"].setdefault(q.get("app", ""), []).extend(json.loads(body or b"[]"))
            return self._send(204, b"")
        if u.path == "/_reset":
            with LOCK:
                STATE.update(script={}, log=[], token="")
            return self._send(204, b"")
        if u.path == "/_token":
            with LOCK:
                STATE["token"] = body.decode()
            return self._send(204, b"")
        if u.path == "/_log":
            app = q.get("app")
            with LOCK:
                s = json.dumps([e for e in STATE["log"] if app is None or e["app"] == app])
            return self._send(200, s)
        if u.path.endswith("/events"):
            return self._events(u, q)
        return self._send(404, json.dumps({"code": "NotFound", "message": "no such path"}))

    def _echo(self, q, body):
        if "delay" in q:
            time.sleep(float(q["delay"]))
        status = int(q.get("status", 200))
        extra = [("X-Multi", "a"), ("X-Multi", "b"), ("Location", "/where")]
        if "hsize" in q:
            extra.append(("X-Big", "b" * int(q["hsize"])))
        for i in range(int(q.get("hlines", "0"))):
            extra.append(("X-Line-%d" % i, "l" * 1000))
        if "size" in q:
            n = int(q["size"])
            if q.get("chunked"):
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                left = n
                while left > 0:
                    k = min(left, 65536)
                    self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                    left -= k
                self.wfile.write(b"0\r\n\r\n")
                return None
            return self._send(status, b"x" * n, "text/plain", extra)
        hdrs = {}
        for k, v in self.headers.items():
            k = k.lower()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        out = {"method": self.command, "path": self.path, "headers": hdrs,
               "body": body.decode("latin-1")}
        return self._send(status, json.dumps(out), "application/json", extra)

    def _events(self, u, q):
        ack = int(q.get("ack", "1"))
        auth = self.headers.get("Authorization", "")
        app = u.path[:-len("/events")]
        with LOCK:
            queue = STATE["script"].get(app)
            action = queue.pop(0) if queue else {}
            token = STATE["token"]
            entry = {"path": self.path, "app": app, "t": time.monotonic(), "auth": auth,
                     "action": action}
            STATE["log"].append(entry)
        if token and auth != token:
            entry["action"] = {"status": 401}
            return self._send(401, json.dumps({"code": "Unauthorized", "message": "token"}),
                              extra=[("WWW-Authenticate", 'Bearer realm="x"')])
        if action.get("drop"):
            self.close_connection = True
            return None
        if "delay" in action:
            time.sleep(float(action["delay"]))
        if "status" in action:
            return self._send(int(action["status"]), action.get("body", ""),
                              action.get("ctype", "application/json"))
        if action.get("garbage"):
            return self._send(200, "{not json")
        base = u.path
        links = {"self": {"href": self.path}}
        nxt = action.get("href") or "%s?ack=%d" % (base, ack + 1)
        if not action.get("nolinks"):
            links[action.get("link", "next")] = {"href": nxt}
        batch = {"_links": links, "n": ack,
                 "sender": [{"rel": "me", "href": "/app/me",
                             "events": [{"link": {"rel": "me", "href": "/app/me"},
                                         "type": "updated"}]}]}
        return self._send(200, json.dumps(batch))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024   # listen backlog: many concurrent connects

    def handle_error(self, request, client_address):
        pass                        # clients hanging up (timeouts, cancels) are expected


def main():
    args, addr, tls = sys.argv[1:], "127.0.0.1", None
    while args:
        a = args.pop(0)
        if a == "--bind":
            addr = args.pop(0)
        elif a == "--tls":
            tls = (args.pop(0), args.pop(0))
        else:
            sys.exit("http_peer.py: unknown argument " + a)
    srv = Server((addr, 0), Handler)
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    sys.stdout.write("PORT %d PID %d ADDR %s\n" % (srv.server_address[1], os.getpid(), addr))
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
