#!/usr/bin/env python3
"""A stand-in container registry on loopback, for the real node's pull failures.

    test-registry.py PORT MODE [CERT KEY]

MODE: 401 (asks for credentials), 404 (knows no manifest), 429 (rate limits), hang (accepts and
never answers), tls (answers 404 over HTTPS with CERT and KEY, which the node is told not to trust).
Each answers as the OCI distribution API does (a JSON `errors` body). It listens on 127.0.0.1 only
and runs until killed.
"""
import http.server
import json
import socketserver
import ssl
import sys
import time

port, mode = int(sys.argv[1]), sys.argv[2]
CODES = {"401": (401, "UNAUTHORIZED"), "404": (404, "MANIFEST_UNKNOWN"), "429": (429, "TOOMANYREQUESTS"),
         "tls": (404, "MANIFEST_UNKNOWN")}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.reply(with_body=False)

    def do_GET(self):
        self.reply(with_body=True)

    def reply(self, with_body):
        if mode == "hang":
            time.sleep(3600)
            return
        code, error = CODES[mode]
        body = json.dumps({"errors": [{"code": error, "message": error.lower()}]}).encode()
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="rw-test"')
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", port), Handler)
if mode == "tls":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
