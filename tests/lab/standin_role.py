"""A stand-in for a dockyard role, used only by the lab plumbing tests.

It takes a role's command line (`ROLE --ip IP --port PORT ...`), serves
`/health` there and forks one child (as an agent forks executors), so the
tests can check that the lab starts processes at the node's address and that
`lab down` stops processes it never recorded. The end-to-end test runs the
real master, agent and scheduler instead.
"""
from __future__ import annotations

import http.server
import os
import sys
import time


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    ip = args[args.index("--ip") + 1]
    port = int(args[args.index("--port") + 1])
    if os.fork() == 0:           # a grandchild the lab never sees started
        os.setsid()
        while True:
            time.sleep(3600)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = f"{role} {os.uname().nodename}\n".encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    http.server.ThreadingHTTPServer((ip, port), Health).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
