"""Write the relief engine's mesh for one image as an .npz (vertices, faces, uvs), for pictures and checks.

Run with the backend environment, from the checkout whose behaviour you want (this one, or an export of an
older commit, e.g. ``git archive <commit> | tar -x -C /tmp/old``):
    .venv/bin/python scripts/relief_mesh_npz.py examples/suzanne.png out/after.npz [--param faces=0 ...]
scripts/render_before_after.py renders two such files side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("out")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="engine parameter; the value is read as JSON (resolution=384, detail_mode=\"shape\")")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.relief import ReliefEngine
    from backend.images import decode_image
    from backend.jobs import JobContext

    params = {}
    for item in args.param:
        name, _, value = item.partition("=")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value  # a bare word: an enum option
    engine = ReliefEngine()
    image = decode_image(Path(args.image).read_bytes())
    out = engine.generate(EngineRequest(image, Path(args.image).stem, 0, validate_params(engine.params, params)),
                          JobContext())
    mesh = out.meshes[0]
    np.savez(args.out, vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs)
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {out.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
