"""Camera-space normal maps rendered by Blender (Cycles), to check the rasterised labels against an independent
renderer: ``python -m synthesis.blender.render_normals --mesh M.npz --views V.npz --out O.npz``.

The material emits Blender's world-space shading normal as (n + 1) / 2; one sample per pixel at the pixel
centre (the smallest filter), written as float EXR so no view transform touches the values. Each pixel's
normal is then turned into the camera's frame with the camera's own rotation (backend/camera.py: +X right,
+Y up, +Z towards the viewer). Writes ``normals`` [K, H, W, 3] float32 (unit, 0 outside) and ``alpha`` [K, H, W] uint8.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from backend.atomic import write_atomic

from .render_rgb import _add_mesh, _empty_scene, _place_camera, _render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", required=True)
    parser.add_argument("--views", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with np.load(args.mesh, allow_pickle=False) as mesh, np.load(args.views, allow_pickle=False) as views:
        vertices, faces = mesh["vertices"], mesh["faces"]
        cameras = json.loads(views["cameras"].tobytes())
    normals, alpha = render_normal_views(vertices, faces, cameras)

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            np.savez(f, normals=normals, alpha=alpha)

    write_atomic(args.out, write)
    return 0


def render_normal_views(vertices: np.ndarray, faces: np.ndarray,
                        cameras: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    scene = _empty_scene(1)
    scene.cycles.filter_width = 0.01  # one ray through each pixel centre, as the rasterizer samples
    scene.cycles.max_bounces = 0
    scene.world.color = (0.0, 0.0, 0.0)
    _normal_material(_add_mesh(scene, vertices, faces))
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    out, alphas = [], []
    for cam in cameras:
        _place_camera(camera, scene, cam)
        rgba = _render(scene, exr=True)  # [H, W, 4] linear
        inside = rgba[..., 3] > 0.5
        n = (rgba[..., :3] * 2.0 - 1.0) @ np.asarray(cam["rotation"], np.float32).T  # world -> camera
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        out.append(np.where(inside[..., None], n, 0.0).astype(np.float32))
        alphas.append(np.round(np.clip(rgba[..., 3], 0, 1) * 255).astype(np.uint8))
    return np.stack(out), np.stack(alphas)


def _normal_material(material: Any) -> None:
    """Emission of (world-space shading normal + 1) / 2, and nothing else."""
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    for node in list(nodes):
        if node.type != "OUTPUT_MATERIAL":
            nodes.remove(node)
    output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    geometry = nodes.new("ShaderNodeNewGeometry")
    encode = nodes.new("ShaderNodeVectorMath")
    encode.operation = "MULTIPLY_ADD"
    encode.inputs[1].default_value = (0.5, 0.5, 0.5)
    encode.inputs[2].default_value = (0.5, 0.5, 0.5)
    emission = nodes.new("ShaderNodeEmission")
    links.new(geometry.outputs["Normal"], encode.inputs[0])
    links.new(encode.outputs["Vector"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])


if __name__ == "__main__":
    raise SystemExit(main())
