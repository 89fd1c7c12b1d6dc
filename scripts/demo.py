"""The main job (``make demo``): headless Blender builds and installs the extension into a throwaway user
folder, generates a mesh from the bundled example image with the default engine, and writes a .blend,
a .glb, the normal map and a rendered preview into the output folder.

Run with the bpy environment; the backend interpreter comes from HI3DGEN_PYTHON:
    HI3DGEN_PYTHON=.venv/bin/python .venv-blender/bin/python scripts/demo.py --out out
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(REPO / "examples" / "suzanne.png"))
    parser.add_argument("--out", default=str(REPO / "out"))
    parser.add_argument("--engine", default="relief")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview-size", type=int, default=640)
    return parser.parse_args()


def build_extension() -> Path:
    """Build and validate the extension zip with the repository's own build script."""
    subprocess.run([sys.executable, str(REPO / "build_addon.py")], check=True, cwd=REPO)
    zips = sorted((REPO / "dist").glob("hi3dgen-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise SystemExit("build_addon.py produced no dist/hi3dgen-*.zip")
    return zips[-1]


def main() -> int:
    args = parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("HI3DGEN_PYTHON"):
        raise SystemExit("Set HI3DGEN_PYTHON to the backend's interpreter (make demo does this).")
    zip_path = build_extension()
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="hi3dgen-demo-user-")  # before bpy loads

    import bpy

    sys.path.insert(0, str(REPO / "scripts"))
    from render_preview import render_preview

    bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(zip_path), enable_on_install=True)
    print(f"installed {zip_path.name} into a throwaway user folder")
    for obj in list(bpy.data.objects):  # start from an empty scene (the startup file has a cube, camera, light)
        bpy.data.objects.remove(obj)
    stem = Path(args.image).stem
    t0 = time.perf_counter()
    result = bpy.ops.hi3dgen.generate(image_path=str(Path(args.image).resolve()), engine=args.engine,
                                      seed=args.seed, with_material=True)
    if result != {"FINISHED"}:
        raise SystemExit(f"generation failed: {result}")
    obj = bpy.context.active_object
    print(f"generated '{obj.name}': {len(obj.data.vertices)} vertices, {len(obj.data.polygons)} faces "
          f"in {time.perf_counter() - t0:.1f}s")
    write_outputs(bpy, obj, out, stem)
    render_preview(obj, out / f"{stem}_preview.png", size=args.preview_size)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / f"{stem}.blend"))
    for name in (f"{stem}.blend", f"{stem}.glb", f"{stem}_normal.png", f"{stem}_preview.png"):
        print(f"wrote {out / name}")
    return 0


def write_outputs(bpy, obj, out: Path, stem: str) -> None:  # noqa: ANN001 - bpy is the module
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.export_scene.gltf(filepath=str(out / f"{stem}.glb"), use_selection=True, export_format="GLB")
    image = next((n.image for m in obj.data.materials if m and m.node_tree
                  for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image), None)
    if image is None:
        raise SystemExit("the generated object has no normal-map image")
    image.filepath_raw = str(out / f"{stem}_normal.png")
    image.file_format = "PNG"
    image.save()
    image.pack()  # the .blend stays self-contained


if __name__ == "__main__":
    sys.exit(main())
