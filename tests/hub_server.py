"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1 (standard library only), for download tests.

It serves local folders as repositories: ``/api/models/<repo>/revision/<rev>?blobs=true`` lists each file
with its size and its checksum as the Hub does (``lfs.sha256`` for ``.safetensors``, ``blobId`` = the git
blob id for the rest), and ``/<repo>/resolve/<commit>/<path>`` sends the bytes, honouring
``Range: bytes=N-``. Faults on purpose: ``drop_once`` paths lose the connection half-way through their
first transfer; ``corrupt`` paths send flipped bytes; ``stall`` paths wait on an event mid-file (so a test
can cancel at a known point). Every file request is recorded with its Range header.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    repos: dict[str, Path] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    stall: set[str] = field(default_factory=set)
    stall_reached: threading.Event = field(default_factory=threading.Event)
    stall_release: threading.Event = field(default_factory=threading.Event)
    ignore_range: set[str] = field(default_factory=set)
    "Paths answered with the whole file (200) even when a Range is asked for."
    fail_first: dict[str, list[int]] = field(default_factory=dict)
    "Path -> HTTP codes answered to its first requests, one each (503: try again; 401: gated)."
    requests: list[tuple[str, str]] = field(default_factory=list)
    "(repo path, Range header or '') of every file request, in order."
    auth: list[str] = field(default_factory=list)
    "The Authorization header of every request ('' when absent)."
    redirect: dict[str, str] = field(default_factory=dict)
    "Path -> 'same' (a relative redirect on this host) or 'other' (to http://localhost:<port>, as a CDN)."
    cdn_auth: dict[str, str] = field(default_factory=dict)
    "Path -> the Authorization header its redirected request carried."
    licence: str = "mit"


def listing(repo_id: str, folder: Path, licence: str = "mit") -> dict:
    """What the Hub's model-info API answers with ``blobs=true`` for ``folder``."""
    siblings = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        entry: dict = {"rfilename": path.relative_to(folder).as_posix(), "size": len(data)}
        if path.suffix == ".safetensors":
            entry["blobId"] = "ffff" * 10  # the pointer file's id: not the content's
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        else:
            entry["blobId"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        siblings.append(entry)
    return {"id": repo_id, "sha": COMMIT, "cardData": {"license": licence}, "siblings": siblings}


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.state.auth.append(self.headers.get("Authorization", ""))
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            self._listing("/".join(parts[2:4]))
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            self._file("/".join(parts[:2]), "/".join(parts[4:]))
            return
        if len(parts) >= 4 and parts[0] == "cdn":
            key = "/".join(parts[1:])
            self.state.cdn_auth[key] = self.headers.get("Authorization", "")
            self._file("/".join(parts[1:3]), "/".join(parts[3:]), redirected=True)
            return
        self._send(404, b"not found")

    def _listing(self, repo_id: str) -> None:
        folder = self.state.repos.get(repo_id)
        if folder is None:
            self._send(404, b'{"error": "Repository not found"}')
            return
        self._send(200, json.dumps(listing(repo_id, folder, self.state.licence)).encode())

    def _file(self, repo_id: str, rel: str, redirected: bool = False) -> None:
        folder = self.state.repos.get(repo_id)
        path = folder / rel if folder is not None else None
        if path is None or not path.is_file():
            self._send(404, b"Entry not found")
            return
        key = f"{repo_id}/{rel}"
        if key in self.state.redirect and not redirected:
            where = "" if self.state.redirect[key] == "same" else f"http://localhost:{self.server.server_address[1]}"
            self.send_response(302)
            self.send_header("Location", f"{where}/cdn/{key}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.state.requests.append((key, self.headers.get("Range", "")))
        if self.state.fail_first.get(key):
            self._send(self.state.fail_first[key].pop(0), b"try again")
            return
        data = path.read_bytes()
        if key in self.state.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        start = None if key in self.state.ignore_range else _range_start(self.headers.get("Range", ""))
        if start is not None and start >= len(data):
            self._send(416, b"")
            return
        body = data[start or 0:]
        self.send_response(206 if start is not None else 200)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._body(key, body)

    def _body(self, key: str, body: bytes) -> None:
        half = len(body) // 2
        if key in self.state.drop_once:
            self.state.drop_once.discard(key)
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the connection drops mid-file
            return
        if key in self.state.stall:
            self.state.stall.discard(key)
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.state.stall_reached.set()
            self.state.stall_release.wait(30)
            self.wfile.write(body[half:])
            return
        self.wfile.write(body)

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


def _range_start(header: str) -> int | None:
    if not header.startswith("bytes=") or not header.endswith("-"):
        return None
    value = header[len("bytes="):-1]
    return int(value) if value.isdigit() else None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-file (a cancel) is expected here


class HubServer:
    """``with HubServer() as hub: hub.state.repos[...] = folder; os.environ['HF_ENDPOINT'] = hub.url``."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stall_release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def file_requests(self, suffix: str) -> list[str]:
        """The Range headers of the requests for files ending in ``suffix``."""
        return [r for key, r in self.state.requests if key.endswith(suffix)]
