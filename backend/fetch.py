"""A plain resumable HTTP downloader (standard library only): one file at a time, into ``<file>.part``.

``fetch_file`` continues a ``.part`` left by a cancel or a dropped connection with an HTTP Range request,
retries network failures with a growing pause, hashes what it receives (sha256, or the git blob id for small
files the Hub keeps in git), and renames the finished file into place only when its size and hash match.
A wrong hash deletes the part, so the next try starts clean. Cancel is an event checked between chunks and
during the pauses; the part stays for the next run. ``ProgressMeter`` adds up the bytes of a whole plan and
reports bytes done, total, rate and time left to a callback.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BackendError

CHUNK = 1 << 20
"Bytes read per step; cancel is checked between steps."
SPACE_MARGIN = 64 << 20
"Free bytes kept spare on the disk beyond what the download needs."


class FetchError(BackendError):
    """A download that cannot go on (refused, not found, no space, bad checksum, no network)."""

    code = "download_failed"


class FetchCancelled(FetchError):
    """The user cancelled; what arrived so far stays in the ``.part`` file for the next run."""

    code = "cancelled"


@dataclass(frozen=True)
class FetchOptions:
    """How patient the downloader is."""

    timeout: float = 30.0
    "Seconds to connect, and seconds one read may wait for data."
    retries: int = 6
    "Failures in a row (without a byte of progress between them) before the download gives up."
    backoff: float = 1.0
    "Seconds of the first pause after a failure; each further failure doubles it."
    backoff_max: float = 30.0
    chunk: int = CHUNK
    headers: tuple[tuple[str, str], ...] = ()
    "Extra request headers (the Hub token); sent to the first host only, never on to a redirect's."


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where it goes (relative, '/'-separated), where it comes from, what it must be."""

    path: str
    url: str
    size: int
    sha256: str = ""
    "Expected sha256 (hex) of the content; the Hub gives it for LFS files."
    git_sha1: str = ""
    "Expected git blob id (sha1 of 'blob <size>\\0' + content); the Hub gives it for files kept in git."


@dataclass(frozen=True)
class Progress:
    """One progress report of a whole download."""

    done: int
    total: int
    rate: float
    "Bytes per second, smoothed."
    eta: float | None
    "Seconds left at that rate (None until a rate is known)."
    file: str = ""
    "The file being fetched."


class ProgressMeter:
    """Adds up bytes across files; calls ``callback`` at most every ``interval`` seconds (and at the end)."""

    def __init__(self, total: int, callback: Callable[[Progress], None] | None = None,
                 interval: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self.rate = 0.0
        self._callback = callback
        self._interval = interval
        self._clock = clock
        self._last_emit = -1e9
        self._mark = (clock(), 0)  # (time, done) of the last rate sample

    def add(self, n: int, file: str = "", force: bool = False) -> None:
        """``n`` more bytes arrived (negative: bytes thrown away, e.g. a restart from zero)."""
        self.done = max(0, self.done + n)
        now = self._clock()
        t0, d0 = self._mark
        if now - t0 >= 0.5 and n > 0:  # a rate sample every half second, smoothed
            sample = (self.done - d0) / (now - t0)
            self.rate = sample if self.rate == 0 else 0.7 * self.rate + 0.3 * sample
            self._mark = (now, self.done)
        if n < 0:
            self._mark = (now, self.done)
        self._emit(now, file, force)

    def resumed(self, n: int, file: str = "") -> None:
        """``n`` bytes were already on disk: counted as done, not as speed."""
        self.done += n
        self._mark = (self._mark[0], self._mark[1] + n)
        self._emit(self._clock(), file, True)

    def _emit(self, now: float, file: str, force: bool) -> None:
        if self._callback is not None and (force or now - self._last_emit >= self._interval):
            self._last_emit = now
            self._callback(self.snapshot(file))

    def snapshot(self, file: str = "") -> Progress:
        left = max(0, self.total - self.done)
        eta = left / self.rate if self.rate > 0 else (0.0 if left == 0 else None)
        return Progress(self.done, self.total, self.rate, eta, file)


def check_free_space(folder: Path, needed: int,
                     disk_usage: Callable[[str], Any] | None = None) -> None:
    """``FetchError`` unless the disk holding ``folder`` (or its nearest existing parent) has room."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = int((disk_usage or shutil.disk_usage)(str(probe)).free)
    if needed + SPACE_MARGIN > free:
        raise FetchError(f"Not enough free disk space in {probe}: the download needs {human_bytes(needed)}, "
                         f"{human_bytes(free)} are free.",
                         hint="Free some space, or choose a Weights Folder on a larger disk.")


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follows redirects; the token goes along only to the same host (the Hub's own relative redirects),
    never to a CDN's signed address on another host."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc == urllib.parse.urlsplit(
                req.full_url).netloc:
            for name, value in req.unredirected_hdrs.items():
                if name.lower() == "authorization":
                    new.add_unredirected_header(name, value)
        return new


def open_url(request: urllib.request.Request, timeout: float) -> Any:
    """``urlopen`` with the token kept on same-host redirects only."""
    return urllib.request.build_opener(_SameHostAuth()).open(request, timeout=timeout)


def fetch_file(remote: RemoteFile, dest: Path, meter: ProgressMeter | None = None,
               cancel: threading.Event | None = None, options: FetchOptions | None = None) -> Path:
    """Download ``remote`` to ``dest`` (resuming ``dest.part``); returns ``dest`` once verified and in place."""
    opts = options or FetchOptions()
    meter = meter or ProgressMeter(remote.size)
    stop = cancel or threading.Event()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    hasher = _Hasher(remote)
    have = _resume_from(part, remote.size, hasher)
    meter.resumed(have, remote.path)
    failures = 0
    while have < remote.size or (have == 0 and remote.size == 0 and not part.exists()):
        _check_cancel(stop, remote)
        try:
            have = _transfer(remote, part, have, hasher, meter, stop, opts)
        except _Retryable as exc:
            have = part.stat().st_size if part.exists() else 0
            failures = 0 if exc.progressed else failures + 1
            if failures >= opts.retries:
                raise FetchError(f"Downloading {remote.path} failed {failures} times in a row: {exc}",
                                 hint="Check the network connection and run the download again; it "
                                      "resumes where it stopped.") from None
            _pause(stop, remote, min(opts.backoff_max, opts.backoff * 2 ** max(0, failures - 1)))
    _finish(remote, part, dest, hasher)
    return dest


# ------------------------------------------------------------------------------------------- internals


class _Retryable(Exception):
    def __init__(self, reason: str, progressed: bool) -> None:
        super().__init__(reason)
        self.progressed = progressed


class _Hasher:
    """The checksum the remote file names: sha256, else the git blob id, else none (size only)."""

    def __init__(self, remote: RemoteFile) -> None:
        self.remote = remote
        self.reset()

    def reset(self) -> None:
        if self.remote.sha256:
            self.h = hashlib.sha256()
        elif self.remote.git_sha1:
            self.h = hashlib.sha1(usedforsecurity=False)
            self.h.update(b"blob %d\0" % self.remote.size)
        else:
            self.h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def problem(self) -> str:
        want = (self.remote.sha256 or self.remote.git_sha1).lower()
        got = self.h.hexdigest()
        if not want or got == want:
            return ""
        kind = "sha256" if self.remote.sha256 else "git blob id"
        return f"its {kind} is {got}, the repository says {want}"


def _resume_from(part: Path, size: int, hasher: _Hasher) -> int:
    """Bytes already in ``part`` (hashed into ``hasher``); a part longer than the file is thrown away."""
    if part.is_symlink() or (part.exists() and not part.is_file()):
        raise FetchError(f"{part} is not a regular file.", hint="Delete it and run the download again.")
    if not part.exists():
        return 0
    have = part.stat().st_size
    if have > size:
        part.unlink()
        return 0
    with part.open("rb") as f:
        while block := f.read(CHUNK):
            hasher.update(block)
    return have


def _transfer(remote: RemoteFile, part: Path, have: int, hasher: _Hasher, meter: ProgressMeter,
              stop: threading.Event, opts: FetchOptions) -> int:
    """One request from byte ``have``; returns the bytes in the part now (the whole file, or raises)."""
    request = urllib.request.Request(remote.url, headers={"User-Agent": "hi3dgen-backend"})
    for name, value in opts.headers:
        request.add_unredirected_header(name, value)
    if have:
        request.add_header("Range", f"bytes={have}-")
    start = have
    try:
        with open_url(request, opts.timeout) as response:
            restarted = bool(have) and _is_full_body(response, have, remote)
            if restarted:  # the server ignored the Range: start again from zero
                hasher.reset()
                meter.add(-have, remote.path)
                start = have = 0
            mode = "wb" if restarted or not part.exists() else "ab"
            with part.open(mode) as out:
                have = _copy(response, out, have, remote, hasher, meter, stop, opts.chunk)
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have == remote.size:  # asked for bytes past the end: it was complete
            return have
        _raise_http(exc, remote)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        done = part.stat().st_size if part.exists() else 0
        raise _Retryable(_reason(exc), progressed=done > start) from None
    except OSError as exc:  # writing the part: disk full, no permission
        raise FetchError(f"Cannot write {part}: {exc}",
                         hint="Free some disk space or choose another Weights Folder, then run the download "
                              "again.") from None
    if have < remote.size:
        raise _Retryable(f"the connection closed after {have} of {remote.size} bytes", progressed=have > start)
    return have


def _is_full_body(response: Any, have: int, remote: RemoteFile) -> bool:
    """True when the server ignored the Range header and sends the whole file (200), False for the 206."""
    if response.status == 200:
        return True
    span = response.headers.get("Content-Range", "")
    if response.status == 206 and span.startswith(f"bytes {have}-"):
        return False
    raise FetchError(f"The server answered a resume of {remote.path} with '{response.status} {span}'.",
                     hint="Delete the .part file and run the download again.")


def _copy(response: Any, out: Any, have: int, remote: RemoteFile, hasher: _Hasher, meter: ProgressMeter,
          stop: threading.Event, chunk: int) -> int:
    read = getattr(response, "read1", response.read)  # read1: what has arrived, so the part grows steadily
    while have < remote.size:
        _check_cancel(stop, remote)
        block = read(min(chunk, remote.size - have))
        if not block:
            break
        out.write(block)
        hasher.update(block)
        have += len(block)
        meter.add(len(block), remote.path)
    return have


def _finish(remote: RemoteFile, part: Path, dest: Path, hasher: _Hasher) -> None:
    if not part.exists():  # an empty file: nothing was written
        part.write_bytes(b"")
    problem = hasher.problem()
    if problem:
        part.unlink()
        raise FetchError(f"The download of {remote.path} is corrupt: {problem}. The bad copy was deleted.",
                         hint="Run the download again; if it keeps failing, the mirror (HF_ENDPOINT) serves "
                              "wrong files.")
    os.replace(part, dest)


def _raise_http(exc: urllib.error.HTTPError, remote: RemoteFile) -> None:
    if exc.code in (408, 425, 429) or exc.code >= 500:
        raise _Retryable(f"the server answered {exc.code} {exc.reason}", progressed=False) from None
    hint = {401: "The repository needs a Hugging Face token: set HF_TOKEN (and accept the model's terms "
                 "on its page).",
            403: "Access is refused: accept the model's terms on its Hugging Face page and set HF_TOKEN.",
            404: "The file is not at that address: check HF_ENDPOINT, or report that the repository "
                 "layout changed."}.get(exc.code, "Check HF_ENDPOINT and the network, then try again.")
    raise FetchError(f"Downloading {remote.path} failed: {exc.code} {exc.reason} ({remote.url}).",
                     hint=hint) from None


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {inner if inner is not None else exc}"


def _check_cancel(stop: threading.Event, remote: RemoteFile) -> None:
    if stop.is_set():
        raise FetchCancelled(f"Download of {remote.path} cancelled.",
                             hint="Run the download again to resume where it stopped.")


def _pause(stop: threading.Event, remote: RemoteFile, seconds: float) -> None:
    if stop.wait(seconds):
        _check_cancel(stop, remote)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as the Hub shows sizes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_seconds(seconds: float | None) -> str:
    """75 -> '1 min 15 s'; None -> '-'."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
