"""WebDataset shards: plain POSIX tar files of samples, written byte-for-byte reproducibly.

One sample is the tar members sharing a key (the asset id, which has no dot): ``<id>.json``,
``<id>.occ_surface.npy`` and so on (README: dataset layout). Members carry no time stamps or owners, so
the same samples always give the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backend.atomic import write_atomic


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1) + "\n").encode()


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> None:
    """Atomically write ``samples`` (each: member suffix -> bytes, with "__key__") as one tar."""
    def write(temp: Path) -> None:
        with tarfile.open(temp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"].decode()
                for suffix in sorted(s for s in sample if s != "__key__"):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size, info.mtime, info.mode = len(sample[suffix]), 0, 0o644
                    tar.addfile(info, io.BytesIO(sample[suffix]))

    write_atomic(path, write)


def read_shard(path: Path) -> Iterator[dict[str, bytes]]:
    """The samples of one shard in order: {"__key__": id, suffix: bytes, ...}; regular members only."""
    current: dict[str, bytes] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, suffix = Path(member.name).name.partition(".")
            if current and current["__key__"] != key.encode():
                yield current
                current = {}
            current["__key__"] = key.encode()
            extracted = tar.extractfile(member)
            current[suffix] = extracted.read() if extracted is not None else b""
    if current:
        yield current
