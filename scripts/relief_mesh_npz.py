"""Write the relief engine's mesh for one image as an .npz (vertices, faces, uvs), for pictures and checks.

Run with the backend environment, from the checkout whose behaviour you want (this one, or an export of an
older commit, e.g. ``git archive <commit> | tar -x -C /tmp/old``):
    .venv/bin/python scripts/relief_mesh_npz.py examples/suzanne.png out/after.npz [--param faces=0 ...]
scripts/render_before_after.py renders two such files side by side. ``--mask-from old`` gives the engine the
old border-flood estimate (bench/bench_segmentation.py ``old_mask``) as the mask, as if the user had given it;
``--mask-from PATH`` a mask image (white = object), as the command line's ``--mask``.
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
    parser.add_argument("--mask-from", metavar="old|PATH",
                        help="the mask to use instead of the automatic one: 'old' (the pre-GrabCut border-flood "
                             "estimate, kept in bench/bench_segmentation.py) or a mask image")
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
    if args.mask_from:
        image = with_mask(image, Path(args.image), args.mask_from)
    out = engine.generate(EngineRequest(image, Path(args.image).stem, 0, validate_params(engine.params, params)),
                          JobContext())
    mesh = out.meshes[0]
    np.savez(args.out, vertices=mesh.vertices, faces=mesh.faces, uvs=mesh.uvs,
             mask_coverage=float(out.stats["mask"]["coverage"]))  # the share of the frame the mask took
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {out.stats}")
    return 0


def with_mask(image, path: Path, source: str):  # noqa: ANN001, ANN201 - backend types, imported late
    """``image`` with the mask ``source`` names as a given mask (it wins over any automatic choice)."""
    from backend.images import LoadedImage, apply_mask, decode_image

    if source != "old":
        return apply_mask(image, decode_image(Path(source).read_bytes()))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_segmentation import old_mask

    mask = old_mask(path).astype(np.float32)  # [H, W]: the whole frame when the border was not plain
    rgba = np.concatenate([np.repeat(mask[..., None], 3, axis=-1), np.ones_like(mask)[..., None]], axis=-1)
    return apply_mask(image, LoadedImage(rgba, False, "L"))


if __name__ == "__main__":
    sys.exit(main())
