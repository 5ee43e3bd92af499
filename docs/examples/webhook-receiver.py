"""A usage-export webhook receiver: checks each batch's signature, appends its events to a file
(one JSON event per line) and answers 204. Run: SINK_SECRET=… python3 webhook-receiver.py OUT
It listens on a free loopback port and prints the port on its first line."""

import hashlib
import hmac
import http.server
import json
import os
import sys
import time

SECRET = os.environ["SINK_SECRET"].encode()
OUT = sys.argv[1]
TOLERANCE_S = 300  # refuse a signature older than this: a replayed batch


def signature_ok(header: str, body: bytes) -> bool:
    """x-modelgate-signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>"""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t, v1 = fields["t"], fields["v1"]
        fresh = abs(time.time() - int(t)) <= TOLERANCE_S
    except (KeyError, ValueError):
        return False
    expected = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return fresh and hmac.compare_digest(expected, v1)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not signature_ok(self.headers.get("x-modelgate-signature", ""), body):
            self.send_response(401)
        else:
            with open(OUT, "a") as out:
                for event in json.loads(body):
                    out.write(json.dumps(event) + "\n")
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
