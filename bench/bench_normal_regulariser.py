"""The latent stage's normal regulariser, off and on, at the same budget (tiny configs, CPU), with numbers.

Both runs train the same tiny latent flow on the same toy assets with the same samples, draws and steps; the
only difference is ``normal_weight``. Each trained flow is then sampled with the engine's Euler sampler on
the assets' voxels, the samples are decoded by the (frozen, random tiny) mesh decoder the regulariser used,
and the decoded SDF's normals are compared with the true normals at the surface points: mean angle in degrees
(lower is better) and the share of points whose cube was decoded. The structure stage's equivalent is
``bench/bench_ss_flow_training.py regulariser``.

Run: ``.venv/bin/python bench/bench_normal_regulariser.py --steps 6 --batch 1 --assets 1 --points 64 --sample-steps 4``
(the budget the busy 2-core machine allowed; more steps and assets are the meaningful run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models.loading import load_checkpoint  # noqa: E402
from tests.training.conftest import CPU  # noqa: E402
from tests.training.test_slat_flow import slat_config  # noqa: E402
from training.slat_evaluate import decoded_normal_error  # noqa: E402
from training.slat_synthetic import make_slat_dataset  # noqa: E402
from training.slat_trainer import build_mesh_decoder, train_slat_flow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--assets", type=int, default=2)
    parser.add_argument("--normal-weight", type=float, default=1.0)
    parser.add_argument("--points", type=int, default=128)
    parser.add_argument("--sample-steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_slat_dataset(root / "data", args.assets, points=512)
        for weight in (0.0, args.normal_weight):
            start = time.perf_counter()
            config = slat_config(steps=args.steps, batch_size=args.batch, lr=args.lr, normal_weight=weight,
                                 normal_points=args.points, export="model", log_every=5)
            result = train_slat_flow(config, root / "data", root / f"w{weight:g}", CPU, progress=lambda line: None)
            decoder, norm = build_mesh_decoder(config, torch.device("cpu"))
            score = decoded_normal_error(load_checkpoint(result.export), decoder, norm, root / "data",
                                         steps=args.sample_steps)
            print(f"normal_weight {weight:g}: {args.steps} steps of {args.batch}, final loss "
                  f"{sum(result.losses[-5:]) / 5:.4f}, decoded normals {score.mean_degrees:.2f} deg from the "
                  f"truth (coverage {score.coverage:.2f}) in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
