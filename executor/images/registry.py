"""A client for the OCI distribution / Docker Registry HTTP API v2.

Standard library (`http.client`) only, so pulling never drags a heavy HTTP stack
into the executor. Anonymous, basic and bearer-token auth (the token endpoint is
whatever `WWW-Authenticate` names). Redirects are followed by hand so that
credentials never travel to another host (blob storage behind a redirect).
Every byte read from the network is counted in `bytes_received` (benchmarks use
it to show an update fetches only what changed).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from executor.images.reference import Reference
from framework.errors import ImagePullError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
_CHUNK = 1 << 20
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Credentials:
    username: str
    password: str

    @classmethod
    def parse(cls, text: str | None) -> "Credentials | None":
        """`user:password` (as `--creds` takes it), or None."""
        if not text:
            return None
        user, _, password = text.partition(":")
        return cls(user, password)


def insecure_host(host: str) -> bool:
    """Plain HTTP for loopback registries and those listed in DOCKYARD_INSECURE_REGISTRIES."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    listed = [h.strip() for h in os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "").split(",") if h.strip()]
    return name in ("localhost", "127.0.0.1", "[::1]") or name.startswith("127.") or host in listed


class _Response:
    """A response whose body is read (and counted) by the caller, then closed."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse,
                 client: "RegistryClient") -> None:
        self.conn = conn
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self._client = client

    def read(self, amount: int | None = None) -> bytes:
        data = self.raw.read(amount) if amount is not None else self.raw.read()
        self._client._count(len(data))
        return data

    def close(self) -> None:
        self.raw.close()
        self.conn.close()


class RegistryClient:
    """One registry host; thread-safe (a connection per request)."""

    def __init__(self, host: str, credentials: Credentials | None = None,
                 insecure: bool | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.scheme = "http" if (insecure if insecure is not None else insecure_host(host)) else "https"
        self.credentials = credentials
        self.timeout = timeout
        self.bytes_received = 0
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._auth: dict[str, str] = {}  # scope -> Authorization header value

    def _count(self, n: int, sent: bool = False) -> None:
        with self._lock:
            if sent:
                self.bytes_sent += n
            else:
                self.bytes_received += n

    # -- plumbing -----------------------------------------------------------
    def _open(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None,
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.netloc, timeout=self.timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, path, body=body, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise ImagePullError(f"{method} {url}: {error}") from error

    def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                body: bytes | Path | None = None, ok: tuple[int, ...] = (200,)) -> _Response:
        """Send with auth (answering one challenge) and manual redirects; check the status."""
        url = path if path.startswith("http") else f"{self.scheme}://{self.host}{path}"
        headers = dict(headers or {})
        for attempt in range(2):
            sent = dict(headers)
            if scope in self._auth:
                sent["Authorization"] = self._auth[scope]
            if isinstance(body, Path):  # streamed from disk: a 1 GB layer never sits in memory
                self._count(body.stat().st_size, sent=True)
                with open(body, "rb") as handle:
                    conn, raw = self._open(method, url, sent, handle)
            else:
                if body is not None:
                    self._count(len(body), sent=True)
                conn, raw = self._open(method, url, sent, body)
            if raw.status == 401 and attempt == 0:
                challenge = raw.headers.get("WWW-Authenticate", "")
                raw.read()
                conn.close()
                self._authenticate(challenge, scope)
                continue
            break
        redirects = 0
        while raw.status in (301, 302, 303, 307, 308) and redirects < 5:
            location = raw.headers.get("Location", "")
            raw.read()
            conn.close()
            target = urllib.parse.urljoin(url, location)
            same = urllib.parse.urlsplit(target).netloc == urllib.parse.urlsplit(url).netloc
            follow = {k: v for k, v in sent.items() if same or k.lower() != "authorization"}
            conn, raw = self._open("GET" if method in ("GET", "HEAD") else method, target, follow, None)
            url = target
            redirects += 1
        response = _Response(conn, raw, self)
        if response.status not in ok:
            detail = ""
            if method != "HEAD":
                try:
                    detail = response.read(4096).decode(errors="replace").strip()
                except OSError:
                    pass
            response.close()
            raise ImagePullError(f"{method} {url}: HTTP {response.status} {detail}".strip())
        return response

    def _authenticate(self, challenge: str, scope: str) -> None:
        """Answer a 401: basic credentials, or a bearer token from the named realm."""
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if not self.credentials:
                raise ImagePullError(f"registry {self.host} needs credentials (basic auth)")
            self._auth[scope] = "Basic " + self._basic()
            return
        if kind != "bearer":
            raise ImagePullError(f"registry {self.host}: unsupported auth challenge {challenge!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise ImagePullError(f"registry {self.host}: bearer challenge without realm")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(
            {k: v for k, v in query.items() if v})
        headers = {}
        if self.credentials:
            headers["Authorization"] = "Basic " + self._basic()
        conn, raw = self._open("GET", url, headers, None)
        try:
            payload = raw.read()
            self._count(len(payload))
            if raw.status != 200:
                raise ImagePullError(f"token request to {realm} failed: HTTP {raw.status}")
            token = json.loads(payload).get("token") or json.loads(payload).get("access_token")
        finally:
            conn.close()
        if not token:
            raise ImagePullError(f"token endpoint {realm} gave no token")
        self._auth[scope] = f"Bearer {token}"

    def _basic(self) -> str:
        assert self.credentials
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return base64.b64encode(pair).decode()

    @staticmethod
    def scope(repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    # -- pulling ------------------------------------------------------------
    def manifest(self, ref: Reference, reference: str | None = None) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index, verified when pinned."""
        target = reference or ref.reference
        response = self.request("GET", f"/v2/{ref.repository}/manifests/{target}",
                                self.scope(ref.repository), {"Accept": ACCEPT})
        try:
            body = response.read()
        finally:
            response.close()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if target.startswith("sha256:") and digest != target:
            raise ImagePullError(f"manifest {target} of {ref} does not match its digest ({digest})")
        media = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if media not in MANIFEST_TYPES + INDEX_TYPES:
            media = json.loads(body).get("mediaType", media)
        if media not in MANIFEST_TYPES + INDEX_TYPES:
            raise ImagePullError(f"{ref}: unsupported manifest type {media!r}")
        return body, media, digest

    def blob(self, ref: Reference, digest: str, out: BinaryIO,
             progress: Callable[[int], None] | None = None) -> str:
        """Stream a blob into `out`; returns the sha256 digest of what was received."""
        response = self.request("GET", f"/v2/{ref.repository}/blobs/{digest}", self.scope(ref.repository))
        hasher = hashlib.sha256()
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
                if progress:
                    progress(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            raise ImagePullError(f"download of {digest} from {self.host} broke: {error}") from error
        finally:
            response.close()
        return "sha256:" + hasher.hexdigest()

    # -- pushing ------------------------------------------------------------
    def has_blob(self, ref: Reference, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{ref.repository}/blobs/{digest}",
                         self.scope(ref.repository, push=True)).close()
            return True
        except ImagePullError as error:
            if "HTTP 404" in str(error):
                return False
            raise

    def upload_blob(self, ref: Reference, digest: str, path: Path,
                    progress: Callable[[int], None] | None = None) -> None:
        """Monolithic upload: POST for a session, then one PUT with the content."""
        scope = self.scope(ref.repository, push=True)
        response = self.request("POST", f"/v2/{ref.repository}/blobs/uploads/", scope, ok=(202,),
                                headers={"Content-Length": "0"}, body=b"")
        location = response.headers.get("Location", "")
        response.close()
        if not location:
            raise ImagePullError(f"{self.host} gave no upload location")
        url = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        size = path.stat().st_size
        self.request("PUT", url, scope, {"Content-Type": "application/octet-stream",
                                         "Content-Length": str(size)}, path, ok=(201, 204)).close()
        if progress:
            progress(size)

    def put_manifest(self, ref: Reference, tag: str, body: bytes, media_type: str) -> None:
        self.request("PUT", f"/v2/{ref.repository}/manifests/{tag}", self.scope(ref.repository, push=True),
                     {"Content-Type": media_type, "Content-Length": str(len(body))}, body,
                     ok=(200, 201)).close()
