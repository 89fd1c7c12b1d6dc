"""Put the input view's camera into a GLB written by ``export_mesh``, so importers (Blender's too) show the
mesh from where the picture was taken."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_atomic
from ..camera import Camera, to_gltf

CAMERA_NAME = "input_view"


def add_camera(path: Path | str, camera: Camera) -> Path:
    """Add ``camera`` (a glTF camera on a new root node named ``input_view``) to the GLB at ``path``."""
    import pygltflib

    path = Path(path)
    gltf = pygltflib.GLTF2.load_from_bytes(path.read_bytes())
    spec = to_gltf(camera)
    kind = spec["camera"]["type"]
    if kind == "perspective":
        cam = pygltflib.Camera(type=kind, name=CAMERA_NAME, perspective=pygltflib.Perspective(**spec["camera"][kind]))
    else:
        cam = pygltflib.Camera(type=kind, name=CAMERA_NAME, orthographic=pygltflib.Orthographic(**spec["camera"][kind]))
    gltf.cameras.append(cam)
    gltf.nodes.append(pygltflib.Node(name=CAMERA_NAME, camera=len(gltf.cameras) - 1, matrix=spec["node_matrix"]))
    scene = gltf.scenes[gltf.scene or 0]
    scene.nodes.append(len(gltf.nodes) - 1)
    data = b"".join(gltf.save_to_bytes())
    return write_atomic(path, lambda temp: Path(temp).write_bytes(data))
