"""A stand-in for a dockyard role, used only by the lab plumbing tests.

It takes a role's command line (`ROLE --ip IP --port PORT ...`; the router's
`--stats-port` instead), serves `/health` there (and `/`, where the lab asks
the router's stats page) and forks one child (as an agent forks executors), so the
tests can check that the lab starts processes at the node's address and that
`lab down` stops processes it never recorded. The end-to-end test runs the
real master, agent and scheduler instead. Given the lab's `--tls-cert` and
`--tls-key` (a secured lab, the default), it serves HTTPS with them, as the real
roles do; other flags are ignored.
"""
from __future__ import annotations

import http.server
import os
import ssl
import sys
import time


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    ip = args[args.index("--ip") + 1]
    port = int(flag(args, "--port") or flag(args, "--stats-port") or 0)
    if os.fork() == 0:           # a grandchild the lab never sees started
        os.setsid()
        while True:
            time.sleep(3600)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = f"{role} {os.uname().nodename}\n".encode()
            self.send_response(200 if self.path in ("/health", "/") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Health)
    cert, key = flag(args, "--tls-cert"), flag(args, "--tls-key")
    if cert and key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
