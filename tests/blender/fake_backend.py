"""A tiny stand-in backend speaking the real protocol, with scripted faults (run as a script).

    python fake_backend.py MODE

MODE: ok (a quad-grid mesh with normals and UVs, a normal map and the mesh's textures), slow (progress until
cancelled), crash (exits in the middle of the mesh stream), garbage (writes non-frames mid-stream), hang (stops
answering anything, pings included), error (replies with an Error), busy (an Error 'busy' without a hint),
bad_crc (a mesh with a wrong checksum), no_hello (exits before the handshake), hello_garbage (noise right
after the handshake), garbage_hello (noise instead of the handshake), stray_hello (noise, then a handshake),
stray_texture (a texture for a mesh that never came), bad_texture (a normal texture of 8-bit pixels).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backend import protocol as P  # noqa: E402

GRID = 6  # (GRID - 1)^2 * 2 triangles


def grid_mesh() -> dict[str, np.ndarray]:
    u, v = np.meshgrid(np.linspace(0, 1, GRID, dtype=np.float32), np.linspace(0, 1, GRID, dtype=np.float32))
    verts = np.stack([u - 0.5, np.zeros_like(u), v - 0.5], -1).reshape(-1, 3)  # [V, 3]
    idx = np.arange(GRID * GRID, dtype=np.int32).reshape(GRID, GRID)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    normals = np.tile(np.array([[0.0, -1.0, 0.0]], np.float32), (len(verts), 1))
    uvs = np.stack([u, v], -1).reshape(-1, 2).astype(np.float32)
    return {"vertices": verts, "faces": faces.astype(np.int32), "normals": normals, "uvs": uvs}


class Fake:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.out = os.fdopen(os.dup(1), "wb")
        self.writer = P.FrameWriter(self.out)
        self.cancelled: set[int] = set()
        self.frozen = threading.Event()

    def serve(self) -> None:
        if self.mode == "no_hello":
            print("fake backend: refusing to start", file=sys.stderr, flush=True)
            sys.exit(3)
        if self.mode in ("garbage_hello", "stray_hello"):  # a library printing to stdout before the handshake
            self.out.write(b"Loading something... done\n" + bytes(range(256)))
            self.out.flush()
            if self.mode == "garbage_hello":
                sys.stdin.buffer.read()  # and no handshake ever
                return
        engines = [{"name": "relief", "label": "Relief", "available": True, "weights_present": True,
                    "missing": [], "description": "fake", "params": [
                        {"name": "resolution", "type": "int", "default": 256, "min": 16, "max": 1024,
                         "options": [], "description": ""}]}]
        self.writer.send(P.Hello(backend_version="0.1.0", devices=["cpu"], engines=engines, pid=os.getpid()))
        if self.mode == "hello_garbage":  # then noise instead of frames, and silence
            self.out.write(b"Traceback (most recent call last): not a frame\n")
            self.out.flush()
        reader = P.FrameReader(sys.stdin.buffer)
        while True:
            item = reader.read()
            if item is None:
                return
            msg, rid = item
            if self.frozen.is_set():
                continue
            if isinstance(msg, P.Ping):
                self.writer.send(P.Pong(busy=True), rid)
            elif isinstance(msg, P.Cancel):
                self.cancelled.add(rid)
            elif isinstance(msg, P.Shutdown):
                return
            elif isinstance(msg, P.Generate):
                print(f"fake backend: generate {msg.engine} params={msg.params}", file=sys.stderr, flush=True)
                threading.Thread(target=self.generate, args=(msg, rid), daemon=True).start()

    def generate(self, msg: P.Generate, rid: int) -> None:
        send = self.writer.send
        for step in range(3):
            send(P.Progress(stage="sampling", step=step, total=3, message="fake"), rid)
        if self.mode == "slow":
            while rid not in self.cancelled:
                send(P.Progress(stage="sampling", step=1, total=1000), rid)
                time.sleep(0.05)
            send(P.Error(code="cancelled", message="Generation cancelled."), rid)
            return
        if self.mode == "hang":
            self.frozen.set()
            return
        if self.mode == "busy":
            send(P.Error(code="busy", message="The backend is busy: 8 request(s) (0 MiB) are waiting already."), rid)
            return
        if self.mode == "error":
            send(P.Error(code="bad_input", message="The image has no foreground.", hint="Use another."), rid)
            return
        pixels = np.full((4, 6, 4), 32768, np.uint16)
        pixels[..., 2] = 65535
        send(P.NormalMap(width=6, height=4, pixels=pixels), rid)
        frames = list(P.mesh_frames(0, msg.image_name, grid_mesh(), chunk_bytes=64))
        if self.mode == "huge_mesh":  # a header that would make the client allocate terabytes
            frames[0].n_faces = 1 << 40  # type: ignore[union-attr]
        if self.mode == "bad_crc":
            start = frames[0]
            assert isinstance(start, P.MeshStart)
            start.checksums["vertices"] ^= 1
        for n, frame in enumerate(frames):
            if n == 3 and self.mode == "crash":
                print("fake backend: crashing now", file=sys.stderr, flush=True)
                self.out.flush()
                os._exit(9)
            if n == 3 and self.mode == "garbage":
                self.out.write(b"Traceback (most recent call last): not a frame\n" * 3)
                self.out.flush()
            send(frame, rid)
        if self.mode == "stray_texture":
            send(P.MeshTexture(mesh_index=3, role="normal", width=1, height=1, pixels=np.zeros((1, 1, 4), np.uint16)),
                 rid)
        if self.mode == "bad_texture":
            send(P.MeshTexture(mesh_index=0, role="normal", width=1, height=1, pixels=np.zeros((1, 1, 4), np.uint8)),
                 rid)
        if msg.want_textures:
            flat = np.full((4, 6, 4), 32768, np.uint16)
            flat[..., 2:] = 65535
            send(P.MeshTexture(mesh_index=0, role="normal", width=6, height=4, pixels=flat), rid)
            colour = np.full((4, 6, 4), 255, np.uint8)
            colour[0, :, 1:3] = 0  # the top row red
            send(P.MeshTexture(mesh_index=0, role="base_color", width=6, height=4, pixels=colour), rid)
        send(P.Done(mesh_count=1, seconds=0.01), rid)


if __name__ == "__main__":
    Fake(sys.argv[1] if len(sys.argv) > 1 else "ok").serve()
