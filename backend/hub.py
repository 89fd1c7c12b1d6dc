"""The Hugging Face Hub's HTTP API, as far as downloads need it (standard library only).

``list_files`` reads a repository's file list with sizes and checksums from
``GET <endpoint>/api/models/<repo>/revision/<rev>?blobs=true`` (what ``HfApi.model_info(files_metadata=True)``
calls): each sibling has ``rfilename``, ``size``, ``blobId`` (the git blob id) and, for LFS files,
``lfs.sha256``. Files come from ``<endpoint>/<repo>/resolve/<commit>/<path>``, all from the one commit the
listing named. The endpoint is ``$HF_ENDPOINT`` (a mirror, a studio proxy, a test server), else
huggingface.co; the token is ``$HF_TOKEN`` or the Hub client's saved token; ``HF_HUB_OFFLINE`` refuses.
"""

from __future__ import annotations

import json
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fetch import FetchError, FetchOptions, RemoteFile, open_url

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_LISTING_BYTES = 16 << 20
"Largest API answer read (a repository listing is a few KB)."


@dataclass(frozen=True)
class Listing:
    """A repository at one commit: its files with sizes and checksums, and its declared licence."""

    repo_id: str
    commit: str
    files: tuple[RemoteFile, ...]
    licence: str = ""


def endpoint() -> str:
    """``$HF_ENDPOINT`` without a trailing slash, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def token() -> str:
    """``$HF_TOKEN``, else the token ``huggingface-cli login`` saved (``$HF_HOME/token``), else ''."""
    value = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or ""
    if value:
        return value.strip()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    saved = Path(home) / "token"
    try:
        return saved.read_text(encoding="utf-8").strip() if saved.is_file() else ""
    except OSError:
        return ""


def auth_options(base: FetchOptions | None = None) -> FetchOptions:
    """``base`` with the token header added when there is a token."""
    opts = base or FetchOptions()
    secret = token()
    if not secret:
        return opts
    return FetchOptions(**{**opts.__dict__, "headers": (*opts.headers, ("Authorization", f"Bearer {secret}"))})


def list_files(repo_id: str, revision: str = "main", options: FetchOptions | None = None) -> Listing:
    """The files of ``repo_id`` at ``revision`` with sizes and checksums (``FetchError`` when unreachable)."""
    if offline():
        raise FetchError(f"HF_HUB_OFFLINE is set, so {repo_id} cannot be listed or downloaded.",
                         hint="Unset HF_HUB_OFFLINE to download, or copy the files into the weights folder.")
    opts = options or FetchOptions()
    quoted = urllib.parse.quote(revision, safe="")
    url = f"{endpoint()}/api/models/{repo_id}/revision/{quoted}?blobs=true"
    data = _get_json(url, repo_id, opts)
    return parse_listing(repo_id, data)


def parse_listing(repo_id: str, data: Any) -> Listing:
    """The API answer as a ``Listing``; entries with unsafe paths or no size are refused."""
    if not isinstance(data, dict) or not isinstance(data.get("siblings"), list):
        raise FetchError(f"The Hub's answer for {repo_id} has no file list.",
                         hint="Check HF_ENDPOINT: it must point at a Hugging Face Hub or a mirror of it.")
    commit = str(data.get("sha") or "main")
    files = tuple(_remote_file(repo_id, commit, entry) for entry in data["siblings"])
    card = data.get("cardData") if isinstance(data.get("cardData"), dict) else {}
    licence = card.get("license", "") if isinstance(card.get("license", ""), str) else ""
    return Listing(repo_id, commit, files, licence)


def file_url(repo_id: str, commit: str, path: str) -> str:
    return (f"{endpoint()}/{repo_id}/resolve/{urllib.parse.quote(commit, safe='')}/"
            f"{urllib.parse.quote(path)}")


def safe_path(path: Any) -> str:
    """``path`` if it is a plain relative '/'-path inside the folder; '' otherwise (absolute, '..', '\\')."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path or path.startswith("/"):
        return ""
    norm = posixpath.normpath(path)
    if norm != path or norm.startswith("..") or ":" in norm.split("/")[0]:
        return ""
    return norm


def _remote_file(repo_id: str, commit: str, entry: Any) -> RemoteFile:
    path = safe_path(entry.get("rfilename")) if isinstance(entry, dict) else ""
    if not path:
        raise FetchError(f"The Hub's file list for {repo_id} holds an unusable name: {str(entry)[:80]!r}.",
                         hint="Check HF_ENDPOINT: the mirror's answer is not a Hub listing.")
    lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else {}
    size = lfs.get("size", entry.get("size"))
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FetchError(f"The Hub's file list for {repo_id} gives no size for {path}.",
                         hint="Check HF_ENDPOINT: the listing must come with file sizes (?blobs=true).")
    sha256 = str(lfs.get("sha256") or lfs.get("oid") or "")
    blob = "" if lfs else str(entry.get("blobId") or "")
    return RemoteFile(path, file_url(repo_id, commit, path), size, sha256=sha256, git_sha1=blob)


def _get_json(url: str, repo_id: str, opts: FetchOptions) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "hi3dgen-backend", "Accept": "application/json"})
    for name, value in opts.headers:
        request.add_unredirected_header(name, value)
    try:
        with open_url(request, opts.timeout) as response:
            body = response.read(MAX_LISTING_BYTES + 1)
    except urllib.error.HTTPError as exc:
        hint = {401: "The repository needs a Hugging Face token: set HF_TOKEN.",
                403: "Access is refused: accept the model's terms on its Hugging Face page and set HF_TOKEN.",
                404: "No such repository at that endpoint: check HF_ENDPOINT."}.get(
                    exc.code, "Try again later, or check HF_ENDPOINT.")
        raise FetchError(f"The Hub refused the file list of {repo_id}: {exc.code} {exc.reason} ({url}).",
                         hint=hint) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"Cannot reach the Hub at {endpoint()} to list {repo_id}: {reason}.",
                         hint="Check the network connection (and HF_ENDPOINT if you use a mirror), then run "
                              "the download again.") from None
    if len(body) > MAX_LISTING_BYTES:
        raise FetchError(f"The Hub's answer for {repo_id} is too large.", hint="Check HF_ENDPOINT.")
    try:
        return json.loads(body)
    except ValueError:
        raise FetchError(f"The Hub's answer for {repo_id} is not JSON.",
                         hint="Check HF_ENDPOINT: it must point at a Hugging Face Hub or a mirror of it.") from None
