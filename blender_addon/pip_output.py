"""pip's output read line by line (no bpy): the package and bytes in flight, and a failure told plainly.

pip is run with ``--progress-bar raw`` (pip >= 24.1), which prints ``Progress CURRENT of TOTAL`` lines for
each download; the other lines read here are pip's ordinary ones ("Collecting x", "Downloading x (12 MB)",
"Processing ./x.whl", "Installing collected packages: ...", "ERROR: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")
_COLLECTING = re.compile(r"^\s*Collecting (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+)(?: \(([\d.]+) ([kMG]?B)\))?")
_PROCESSING = re.compile(r"^\s*Processing (\S+)")
_INSTALLING = re.compile(r"^\s*Installing collected packages: (.+)$")
_UNITS = {"B": 1, "kB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}


@dataclass
class PipProgress:
    """What pip is doing now, as far as its output tells."""

    package: str = ""
    "The distribution being fetched or installed ('' before the first)."
    action: str = ""
    "collecting, downloading, processing or installing."
    bytes_done: int = 0
    bytes_total: int = 0
    "Of the current download (0 when unknown)."
    downloaded: int = 0
    "Bytes of the downloads finished so far."
    lines: int = 0

    def feed(self, line: str) -> None:
        """Update from one line of pip's output."""
        self.lines += 1
        progress = _PROGRESS.match(line)
        if progress:
            done, total = int(progress.group(1)), int(progress.group(2))
            if total and done >= total and self.bytes_done < total:
                self.downloaded += total
            self.bytes_done, self.bytes_total = done, total
            return
        for pattern, action in ((_COLLECTING, "collecting"), (_DOWNLOADING, "downloading"),
                                (_PROCESSING, "processing")):
            match = pattern.match(line)
            if match:
                self.package, self.action = short_name(match.group(1)), action
                self.bytes_done, self.bytes_total = 0, 0
                if action == "downloading" and match.group(2):
                    self.bytes_total = int(float(match.group(2)) * _UNITS[match.group(3)])
                return
        installing = _INSTALLING.match(line)
        if installing:
            self.package, self.action = installing.group(1).strip(), "installing"
            self.bytes_done = self.bytes_total = 0

    def text(self) -> str:
        """One line for the panel: 'downloading torch 12.0 / 190.3 MB'."""
        if not self.package:
            return ""
        what = self.package if len(self.package) <= 48 else self.package[:45] + "..."
        if self.bytes_total:
            return f"{self.action} {what} {mb(self.bytes_done)} / {mb(self.bytes_total)}"
        return f"{self.action} {what}"


def short_name(spec: str) -> str:
    """'torch==2.13.0' or '.../torch-2.13.0+cpu-cp311-...whl' or 'https://.../numpy-2.4.6.tar.gz' -> a
    readable name ('torch==2.13.0', 'torch-2.13.0+cpu', 'numpy-2.4.6')."""
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".whl"):
        parts = name[:-4].split("-")
        return "-".join(parts[:2])
    for suffix in (".tar.gz", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class InstallError:
    """A failed install, as the panel shows it."""

    code: str
    "disk_full, proxy, ssl, index_refused, network, not_found, unsupported_platform, pip_failed, ..."
    message: str
    hint: str = ""
    detail: str = ""
    "The output lines that led to this (the last few of them)."

    def user_text(self) -> str:
        return f"{self.message} {self.hint}".strip()


# (code, pattern): the first whose pattern occurs in the output decides; a refused connection is tested
# before the general network failure it is reported within, both before "no matching distribution"
# (what pip says after every retry failed)
_CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("disk_full", re.compile(r"No space left on device|Errno 28\b|ENOSPC|There is not enough space on the disk")),
    ("proxy", re.compile(r"ProxyError|Cannot connect to proxy|407 Proxy Authentication|Tunnel connection failed")),
    ("ssl", re.compile(r"SSLError|CERTIFICATE_VERIFY_FAILED|certificate verify failed")),
    ("index_refused", re.compile(r"Connection refused|Errno 111\b|WinError 10061|HTTP error 40[13]|"
                                 r"40[13] Client Error|401 Unauthorized|403 Forbidden")),
    ("network", re.compile(r"NameResolutionError|Temporary failure in name resolution|Name or service not known|"
                           r"getaddrinfo failed|"
                           r"nodename nor servname|Network is unreachable|No route to host|Read timed out|"
                           r"ConnectTimeoutError|NewConnectionError|Failed to establish a new connection|"
                           r"Connection reset by peer|RemoteDisconnected")),
    ("not_found", re.compile(r"No matching distribution found for|Could not find a version that satisfies")),
)
_MISSING = re.compile(r"No matching distribution found for (\S+)")


def classify(lines: list[str], source: str, location: str, step: str) -> InstallError:
    """The failure that pip's output ``lines`` tell of, with what to do about it. ``source`` is wheels,
    index or default; ``location`` the folder or URL; ``step`` the install stage that failed."""
    text = "\n".join(lines)
    detail = "\n".join(_error_lines(lines)[-6:])
    code = next((c for c, pattern in _CAUSES if pattern.search(text)), "pip_failed")
    where = location or "the package index"
    if code == "disk_full":
        return InstallError(code, "The disk is full.", "Free some space (the backend takes 2 to 6 GB with "
                            "torch), then press Install Backend again.", detail)
    if code == "proxy":
        return InstallError(code, "A proxy refused the connection.", "Check the HTTPS_PROXY / HTTP_PROXY "
                            "environment variables (or pip's proxy setting), or install from a Wheel Folder.",
                            detail)
    if code == "ssl":
        return InstallError(code, f"The secure connection to {where} failed (certificate not trusted).",
                            "A proxy that inspects traffic needs its certificate: set PIP_CERT to it, or "
                            "install from a Wheel Folder.", detail)
    if code == "index_refused":
        return InstallError(code, f"The package index {where} refused the connection.",
                            "Check the Package Index URL (and any credentials it needs), or clear it to use "
                            "the default index, or install from a Wheel Folder.", detail)
    if code == "network":
        return InstallError(code, f"No network: {where} cannot be reached.", "Check the internet connection, "
                            "or install offline from a Wheel Folder (see the README).", detail)
    if code == "not_found":
        return _not_found(text, source, location, step, detail)
    return InstallError(code, f"pip failed while {step_verb(step)}.", "See the install log for the details.",
                        detail)


def _not_found(text: str, source: str, location: str, step: str, detail: str) -> InstallError:
    match = _MISSING.search(text)
    missing = match.group(1) if match else "a package"
    if source == "wheels":
        return InstallError("not_found", f"The wheel folder has no {missing} for this Python and system.",
                            f"Add it to {location}: pip download -d WHEELS -r backend-pins.txt "
                            f"(and the torch wheel), run with the same Python version.", detail)
    if step == "torch":
        return InstallError("unsupported_platform", f"No torch build ({missing}) for this system and Python.",
                            "Choose another Torch Build in the preferences, or run the backend on a supported "
                            "machine through the Remote Command preference.", detail)
    return InstallError("not_found", f"{missing} is not on {location or 'the package index'}.",
                        "A private index must mirror every pinned package (requirements/backend-pins.txt).",
                        detail)


def _error_lines(lines: list[str]) -> list[str]:
    picked = [line for line in lines if line.startswith(("ERROR", "WARNING: Retrying")) or "Error" in line]
    return picked or lines[-6:]


def step_verb(step: str) -> str:
    return {"venv": "creating the environment", "pip": "updating pip", "torch": "installing torch",
            "requirements": "installing the backend's packages", "verify": "checking the environment"}.get(
        step, step)
