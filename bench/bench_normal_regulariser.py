"""The latent stage's normal regulariser, off and on, at the same budget (tiny configs, CPU), over seeds.

The mesh decoder is first *fitted* to the toy data (``slat_synthetic.fit_mesh_decoder``: the SDF read-out of a
tiny random decoder, least squares on its frozen torso's features), so that decoding a toy latent gives a
surface near the true one; a random decoder's normals sit near 90 degrees off whatever the latent, which made
the earlier off / on comparison meaningless. The fitted decoder goes into a tiny release that the trainer's
``[decoder] release`` reads (the regulariser and the evaluation use the same one). Then, per seed, the same
tiny latent flow is trained twice on the same assets with the same draws and steps, ``normal_weight`` 0 and
on; each trained flow is sampled with the engine's Euler sampler on the assets' voxels, decoded, and the
decoded SDF's normals compared with the true normals at the surface points: mean angle in degrees (lower is
better). The assets' own latents, decoded, give the floor. The structure stage's equivalent is
``bench/bench_ss_flow_training.py regulariser``.

Run (the README's figures; the busy 2-core machine):
``.venv/bin/python bench/bench_normal_regulariser.py --steps 15 --batch 1 --assets 2 --points 128 --seeds 3``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from training_runs import fitted_release, mean, quiet, setup_threads, spread

from backend.models.loading import load_checkpoint
from backend.nn.sparse_tensor import SparseTensor
from tests.training.conftest import CPU
from tests.training.test_slat_flow import slat_config
from training.slat_data import SLatAssetFolder
from training.slat_evaluate import decoded_normal_error
from training.slat_normals import angular_errors_degrees
from training.slat_synthetic import make_slat_dataset
from training.slat_trainer import build_mesh_decoder, train_slat_flow


@torch.no_grad()
def own_latent_error(decoder: torch.nn.Module, mean_: torch.Tensor, std: torch.Tensor, data: Path) -> float:
    """Mean decoded-normal angle of the assets' own latents (what a perfect flow would give)."""
    assets = SLatAssetFolder(data, need_surface=True)
    angles = []
    for i in range(len(assets)):
        coords = torch.cat([torch.zeros(len(assets[i].coords), 1, dtype=torch.int32), assets[i].coords], 1)
        decoded = decoder(SparseTensor(coords, assets[i].feats * std + mean_))
        angles.append(angular_errors_degrees(decoded.coords[:, 1:], decoded.feats[:, :8], assets[i].points,
                                             assets[i].normals)[0])  # type: ignore[arg-type]
    return float(torch.cat(angles).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--assets", type=int, default=2)
    parser.add_argument("--normal-weight", type=float, default=1.0)
    parser.add_argument("--points", type=int, default=128)
    parser.add_argument("--sample-steps", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        release = fitted_release(root, data, make_slat_dataset(data, args.assets, points=512))
        decoder_section = {"release": str(release)}
        decoder, norm = build_mesh_decoder(slat_config(decoder=decoder_section), CPU.device)
        print(f"the assets' own latents decode to normals {own_latent_error(decoder, norm.mean, norm.std, data):.2f}"
              " deg from the truth (the floor)")
        errors: dict[float, list[float]] = {0.0: [], args.normal_weight: []}
        for seed in range(args.seeds):
            for weight in errors:
                start = time.perf_counter()
                config = slat_config(decoder=decoder_section, steps=args.steps, batch_size=args.batch, lr=args.lr,
                                     normal_weight=weight, normal_points=args.points, export="model", seed=seed)
                result = train_slat_flow(config, data, root / f"s{seed}_w{weight:g}", CPU, progress=quiet)
                score = decoded_normal_error(load_checkpoint(result.export), decoder, norm, data,
                                             steps=args.sample_steps)
                errors[weight].append(score.mean_degrees)
                print(f"seed {seed}, normal_weight {weight:g}: {args.steps} steps of {args.batch}, last-5 loss "
                      f"{mean(result.losses[-5:]):.4f}, decoded normals {score.mean_degrees:.2f} deg from the truth "
                      f"(coverage {score.coverage:.2f}) in {time.perf_counter() - start:.0f} s", flush=True)
        for weight, values in errors.items():
            print(f"normal_weight {weight:g}: decoded-normal error {spread(values)} deg over seeds")


if __name__ == "__main__":
    main()
