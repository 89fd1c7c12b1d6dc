"""Test-only fault injection, switched on by the HI3DGEN_FAULT environment variable read at start-up.

``HI3DGEN_FAULT=<kind>[@<where>]`` where kind is one of FAULT_KINDS (``hang`` freezes the whole process,
``stall`` only the worker thread) and where is a progress stage name
(e.g. ``relief``), ``mesh`` (inside the mesh stream, the default) or ``start`` (before the handshake).
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import time
from dataclasses import dataclass
from typing import BinaryIO

from .protocol import HEADER, MAGIC, MAX_PAYLOAD, PROTOCOL_VERSION

FAULT_KINDS = ("crash", "hang", "stall", "garbage", "truncated_frame", "oversized_frame", "exit_mid_mesh", "oom")
STALL_SECONDS = 3600.0
"A ``stall`` blocks the worker this long without a cancel point, while the reader thread keeps serving."


@dataclass(frozen=True)
class Faults:
    kind: str = ""
    where: str = "mesh"

    @classmethod
    def parse(cls, spec: str | None) -> "Faults":
        """Parse ``kind[@where]``; an empty spec means no fault."""
        if not spec:
            return cls()
        kind, _, where = spec.partition("@")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        return cls(kind, where or "mesh")

    def fire(self, point: str, raw_out: BinaryIO) -> None:
        """Misbehave now if this fault is set for ``point``."""
        if not self.kind or point != self.where:
            return
        if self.kind == "oom":
            raise MemoryError("injected out-of-memory")
        if self.kind == "hang":
            os.kill(os.getpid(), signal.SIGSTOP)  # the whole process freezes, as a deadlock would
            return
        if self.kind == "stall":
            print(f"[hi3dgen] fault: stalling the worker at {point}", file=sys.stderr, flush=True)
            time.sleep(STALL_SECONDS)  # only the worker is stuck, as in a long native call
            return
        _misbehave(self.kind, raw_out)


def _misbehave(kind: str, raw_out: BinaryIO) -> None:
    if kind == "garbage":
        raw_out.write(b"this is not a frame\n" + os.urandom(64))
        raw_out.flush()
        return
    if kind == "truncated_frame":
        raw_out.write(HEADER.pack(MAGIC, PROTOCOL_VERSION, 4, 0, 100, 0) + b'{"stage": "tru')
    elif kind == "oversized_frame":
        raw_out.write(HEADER.pack(MAGIC, PROTOCOL_VERSION, 7, 0, 2, MAX_PAYLOAD * 4) + b"{}")
        raw_out.write(struct.pack("<Q", 0) * 16)
    raw_out.flush()
    os._exit(70)  # crash, exit_mid_mesh and the frame faults end the process abruptly
