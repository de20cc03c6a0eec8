"""A Docker registry token server (the bearer-token half of registry auth), for tests.

docker-registry's `auth.token` checks JWTs signed by a key whose certificate is in
its `rootcertbundle`; this server signs them (RS256, with the openssl CLI) for
whatever scope is asked, after checking basic credentials when users are set.
"""
from __future__ import annotations

import base64
import http.server
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

from tests.support.procs import free_port

SERVICE = "dockyard-test-registry"
ISSUER = "dockyard-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = root
        self.users = users or {}
        self.port = free_port()
        self.requests: list[dict] = []
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "token.key"
        self.cert = root / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=dockyard-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth_config(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n    rootcertbundle: {self.cert}\n")

    def sign(self, scope: str, subject: str) -> str:
        access = []
        for item in scope.split(" ") if scope else []:
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 600, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64(signature)}"

    def start(self) -> "TokenServer":
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                user = "anonymous"
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if outer.users.get(user) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                elif outer.users:
                    self.send_response(401)
                    self.end_headers()
                    return
                scope = " ".join(query.get("scope", []))
                outer.requests.append({"user": user, "scope": scope, "service": query.get("service", [""])[0]})
                body = json.dumps({"token": outer.sign(scope, user), "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
