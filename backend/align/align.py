"""View alignment: the camera that makes the mesh look like the input view (mask + camera-space normal map).

Coarse search over the sphere of views (``search.py``) gives a few distinct starting rotations with the
scale and offset their silhouette moments imply; a pattern search (``refine``) then polishes rotation,
offset and scale of every start at once under each projection asked for (orthographic and/or a few fields
of view), and the best score wins. The score (``score.py``) is silhouette IoU plus normal agreement.

The local search is the refinement after the coarse one: every step tries +-step on each of rotation
(3 axes), offset (2) and log scale, and also each tilt about the camera's x or y axis paired with a shift
along the other image axis. Without those paired moves it stalls a dozen degrees from the answer (a tilt
alone slides the silhouette off the mask, a shift alone cannot turn it), and a worse, flipped start can
then win; this was the bust's one failure in 20 views before.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..camera import Camera, make_camera
from ..errors import BadInput
from ..jobs import JobContext
from .score import MeshTensors, Target, make_target, mesh_tensors, render_window, score_views
from .search import SPAN, Start, coarse_search

PROJECTIONS = ("auto", "orthographic", "perspective")
MIN_PIXELS = 16


@dataclass(frozen=True)
class AlignConfig:
    projection: str = "auto"  # orthographic | perspective (each of ``fovs_deg``) | auto (all of them)
    fovs_deg: tuple[float, ...] = (30.0, 40.0, 50.0)  # perspective candidates, across the larger side
    directions: int = 200  # coarse view directions on the sphere
    rolls: int = 24  # coarse rolls about the viewing axis
    coarse_size: int = 48  # side of the normalised coarse frame, pixels
    keep: int = 4  # distinct coarse starts refined
    size: int = 128  # side of the refinement's scoring window, pixels
    normal_weight: float = 0.5  # score = (1 - w) IoU + w normal agreement
    first_iterations: int = 12  # refinement steps for every start before keeping the best ones
    finalists: int = 1  # starts carried on under every projection (2 doubles that phase's cost)
    iterations: int = 40  # most refinement steps in each later phase
    min_step_deg: float = 0.1  # stop once the rotation step is below this
    coarse_faces: int = 2000  # the search at half resolution renders the mesh decimated to about this many faces
    max_faces: int = 10000  # and the final refinement to about this many


@dataclass
class AlignResult:
    camera: Camera
    score: float
    iou: float
    normal_agreement: float
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.camera.to_dict(), "alignment": {"score": self.score, "iou": self.iou,
                "normal_agreement": self.normal_agreement, "seconds": self.seconds, **self.stats}}


@dataclass
class _States:
    """N refinement states of one projection type, for the centred mesh."""

    rotation: torch.Tensor  # [N, 3, 3]
    translation: torch.Tensor  # [N, 3] camera frame
    pixel_scale: torch.Tensor  # [N]
    steps: torch.Tensor  # [N, 3] (rotation radians, translation world units, log scale)
    score: torch.Tensor  # [N]
    fov: torch.Tensor  # [N] radians, 0 = orthographic


def align_view(vertices: np.ndarray, faces: np.ndarray, mask: np.ndarray, normals: np.ndarray,
               config: AlignConfig = AlignConfig(), device: torch.device | str = "cpu",
               ctx: JobContext | None = None) -> AlignResult:
    """Estimate the camera of the input view.

    ``vertices`` [V, 3] / ``faces`` [F, 3]: the mesh (world frame). ``mask`` [H, W] bool: the foreground.
    ``normals`` [H, W, 3]: camera-space unit normals (+X right, +Y up, +Z to the viewer).
    """
    t0 = time.perf_counter()
    ctx = ctx or JobContext()
    _check(vertices, faces, mask, normals, config)
    dev = torch.device(device)
    full = mesh_tensors(vertices, faces, dev)
    mesh = mesh_tensors(*_reduced(vertices, faces, config.max_faces), dev, like=full)
    ctx.step("align", 0, 3, "searching the sphere of views")
    small = mesh_tensors(*_reduced(vertices, faces, config.coarse_faces), dev, like=full)
    starts = _coarse(small, mask, normals, config, dev)
    ctx.step("align", 1, 3, "refining the camera")
    coarse = make_target(mask, normals, config.size // 2, dev)
    target = make_target(mask, normals, config.size, dev)
    first = _states(starts, small, coarse, (0.0,), dev)  # every start, orthographic, at half resolution
    _refine(first, small, coarse, config, config.first_iterations, math.radians(config.min_step_deg), ctx)
    leads = _leads(first, config.finalists)
    choices = _states(leads, small, coarse, _fovs(config), dev, step_deg=2.0)  # the best starts under every projection
    _refine(choices, small, coarse, config, config.iterations, math.radians(1.0), ctx)
    one = _pick(choices, int(choices.score.argmax()))
    one.score.fill_(-1.0)  # scores at another resolution do not compare
    _refine(one, mesh, target, config, config.iterations, math.radians(config.min_step_deg), ctx)
    ctx.step("align", 2, 3, "scoring the camera")
    camera = _camera(one, mesh, target)
    masks, rendered = render_window(mesh, one.rotation, one.translation, one.pixel_scale, target,
                                    perspective=bool(one.fov[0] > 0))
    score, iou, agree = (float(x[0]) for x in score_views(masks, rendered, target, config.normal_weight))
    return AlignResult(camera, score, iou, agree, time.perf_counter() - t0,
                       {"coarse_score": starts[0].score, "starts": len(starts)})


def _check(vertices: Any, faces: Any, mask: Any, normals: Any, config: AlignConfig) -> None:
    if config.projection not in PROJECTIONS:
        raise BadInput(f"Unknown projection {config.projection!r}.", hint=f"Use one of: {', '.join(PROJECTIONS)}.")
    if any(not 1.0 <= f <= 150.0 for f in config.fovs_deg) or (config.projection != "orthographic"
                                                               and not config.fovs_deg):
        raise BadInput("Fields of view must lie in [1, 150] degrees.", hint="Give at least one, e.g. 40.")
    v, f = np.asarray(vertices), np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3 or not np.isfinite(v).all():
        raise BadInput("The mesh needs finite vertices [V, 3].", hint="Pass the generated mesh unchanged.")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
        raise BadInput("The mesh faces must be [F, 3] indices into the vertices.", hint="Pass the generated mesh.")
    m, n = np.asarray(mask), np.asarray(normals)
    if m.ndim != 2 or n.shape != (*m.shape, 3) or not np.isfinite(n).all():
        raise BadInput("Alignment needs a mask [H, W] and a normal map [H, W, 3] of the same size.",
                       hint="Give the mask and the camera-space normals of the input view.")
    if int(m.astype(bool).sum()) < MIN_PIXELS:
        raise BadInput("The mask is (nearly) empty: nothing to align to.", hint="Check the image's foreground.")


def _reduced(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """The mesh decimated to about ``target`` faces when it has more: silhouettes of a few hundred pixels
    need no more, and the search renders thousands of views."""
    if len(faces) <= target:
        return vertices, faces
    from ..mesh.cleanup import decimate

    return decimate(np.asarray(vertices, np.float32), np.asarray(faces, np.int32), target)


def _fovs(config: AlignConfig) -> tuple[float, ...]:
    """The fields of view (radians) tried; 0 is orthographic."""
    persp = tuple(math.radians(f) for f in config.fovs_deg)
    return {"orthographic": (0.0,), "perspective": persp, "auto": (0.0, *persp)}[config.projection]


def _leads(st: _States, count: int) -> list[Start]:
    """The ``count`` best states as starts (one when ``count`` <= 1)."""
    order = torch.argsort(st.score, descending=True)[:max(1, count)].tolist()
    return [Start(st.rotation[i].double().cpu().numpy(), st.translation[i].double().cpu().numpy(),
                  float(st.pixel_scale[i]), float(st.score[i])) for i in order]


def _pick(st: _States, i: int) -> _States:
    return _States(*(x[i:i + 1].clone() for x in (st.rotation, st.translation, st.pixel_scale, st.steps,
                                                  st.score, st.fov)))


def _coarse(mesh: MeshTensors, mask: np.ndarray, normals: np.ndarray, config: AlignConfig,
            dev: torch.device) -> list[Start]:
    """Coarse starts from a copy of the target reduced so its silhouette is about twice the coarse frame."""
    size = math.sqrt(float(np.asarray(mask, bool).sum()))
    shrink = max(1, int(size / (config.coarse_size / (2 * SPAN) * 2)))
    m = torch.tensor(np.asarray(mask, np.float32), device=dev)
    n = torch.tensor(np.asarray(normals, np.float32), device=dev) * m[..., None]
    h, w = m.shape
    pad = (0, (-w) % shrink, 0, (-h) % shrink)
    small = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(torch.cat([m[None], n.permute(2, 0, 1)]),
                                                                    pad)[None], shrink)[0]
    small_n = torch.nn.functional.normalize(small[1:].permute(1, 2, 0), dim=-1, eps=1e-12)
    return coarse_search(mesh, small[0], small_n, shrink, (h, w), config.directions, config.rolls,
                         config.coarse_size, config.keep, config.normal_weight)


def _states(starts: list[Start], mesh: MeshTensors, target: Target, fovs: tuple[float, ...],
            dev: torch.device, step_deg: float = 6.0) -> _States:
    """Refinement states for every start under every field of view in ``fovs`` (skipping impossible ones)."""
    rows = []
    side = max(target.width, target.height)
    for s in starts:
        for fov in fovs:
            t = s.translation.copy()
            scale = s.pixel_scale
            if fov > 0:  # same apparent size at the mesh centre: distance = focal / (pixels per unit)
                scale = 0.5 * side / math.tan(0.5 * fov)
                t[2] = -scale / s.pixel_scale
                if -t[2] < 1.05 * mesh.radius:
                    continue
            rows.append((s.rotation, t, scale, fov))
    f32 = dict(dtype=torch.float32, device=dev)
    n = len(rows)
    return _States(torch.tensor(np.array([r[0] for r in rows]).reshape(n, 3, 3), **f32),
                   torch.tensor(np.array([r[1] for r in rows]).reshape(n, 3), **f32),
                   torch.tensor([r[2] for r in rows], **f32),
                   torch.tensor([_steps(step_deg, mesh.radius)] * n, **f32).reshape(n, 3),
                   torch.full((n,), -1.0, **f32), torch.tensor([r[3] for r in rows], **f32))


def _steps(step_deg: float, radius: float) -> list[float]:
    """First pattern-search steps: rotation (radians), offset (6 degrees ~ 4% of the radius), log scale."""
    return [math.radians(step_deg), step_deg / 150 * radius, step_deg / 150]


def _refine(st: _States, mesh: MeshTensors, target: Target, config: AlignConfig, iterations: int,
            min_step: float, ctx: JobContext) -> None:
    """Pattern search in place: try +-step on each of 6 parameters, move to the best, else halve the steps.

    States may mix fields of view but not orthographic with perspective ones (one render call per step).
    """
    for group in _by_projection(st):
        _refine_group(group, st, mesh, target, config, iterations, min_step, ctx)


def _by_projection(st: _States) -> list[torch.Tensor]:
    ortho = st.fov == 0
    return [idx for idx in (torch.nonzero(ortho).squeeze(1), torch.nonzero(~ortho).squeeze(1)) if len(idx)]


def _refine_group(idx: torch.Tensor, full: _States, mesh: MeshTensors, target: Target, config: AlignConfig,
                  iterations: int, min_step: float, ctx: JobContext) -> None:
    st = _States(*(x[idx] for x in (full.rotation, full.translation, full.pixel_scale, full.steps, full.score,
                                     full.fov)))
    _search(st, mesh, target, config, iterations, min_step, ctx)
    for name in ("rotation", "translation", "pixel_scale", "steps", "score"):
        getattr(full, name)[idx] = getattr(st, name)


def _search(st: _States, mesh: MeshTensors, target: Target, config: AlignConfig, iterations: int,
            min_step: float, ctx: JobContext) -> None:
    perspective = bool(st.fov[0] > 0)
    for _ in range(max(0, iterations)):
        ctx.check()
        active = st.steps[:, 0] >= min_step
        if not bool(active.any()):
            return
        rot, trans, scale = _neighbours(st, perspective)  # [N, M, ...]
        n = len(st.score)
        masks, normals = render_window(mesh, rot.reshape(-1, 3, 3), trans.reshape(-1, 3), scale.reshape(-1),
                                       target, perspective)
        score = score_views(masks, normals, target, config.normal_weight)[0].view(n, -1)
        best = score.argmax(1)  # [N]
        pick = torch.arange(n, device=best.device)
        moved = (score[pick, best] > st.score + 1e-6) & (best > 0) & active
        st.rotation = torch.where(moved[:, None, None], rot[pick, best], st.rotation)
        st.translation = torch.where(moved[:, None], trans[pick, best], st.translation)
        st.pixel_scale = torch.where(moved, scale[pick, best], st.pixel_scale)
        st.score = torch.maximum(st.score, torch.where(active, score[:, 0], st.score))
        st.score = torch.where(moved, score[pick, best], st.score)
        st.steps = torch.where((moved | ~active)[:, None], st.steps, st.steps * 0.5)


def _neighbours(st: _States, perspective: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The current state and its M = 21 neighbours: rotations [N, M, 3, 3], translations [N, M, 3], scales [N, M].

    Besides +-step on each of the 6 parameters, a tilt about the camera's x (y) axis is also tried together
    with a shift along y (x) of either sign: tilting moves the silhouette sideways, and without the coupled
    moves the search stalls in the valley that tilt and shift form together.
    """
    delta = _moves(st.rotation.device)[None].repeat(len(st.score), 1, 1)  # [N, M, 6] (rx, ry, rz, tx, ty, log s)
    delta = delta * st.steps[:, None, [0, 0, 0, 1, 1, 2]]
    m = delta.shape[1]
    rot = _rodrigues(delta[..., :3]) @ st.rotation[:, None]  # camera-frame turn about the mesh centre
    trans = st.translation[:, None].repeat(1, m, 1)
    trans[..., :2] += delta[..., 3:5]
    grow = torch.exp(delta[..., 5])  # [N, M]
    scale = st.pixel_scale[:, None].repeat(1, m)
    if perspective:  # move the camera closer (keeping where the centre lands) rather than zoom the lens
        trans = trans / grow[..., None]
    else:
        scale = scale * grow
    return rot, trans, scale


def _moves(dev: torch.device) -> torch.Tensor:
    """Unit moves [M, 6]: none, +-1 on each parameter, and the coupled tilt + shift pairs."""
    rows = [[0.0] * 6]
    for k in range(6):
        for sign in (1.0, -1.0):
            rows.append([sign if j == k else 0.0 for j in range(6)])
    for tilt, shift in ((0, 4), (1, 3)):  # (rx, ty), (ry, tx)
        for a in (1.0, -1.0):
            for b in (1.0, -1.0):
                row = [0.0] * 6
                row[tilt], row[shift] = a, b
                rows.append(row)
    return torch.tensor(rows, device=dev)


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors [..., 3] -> rotation matrices [..., 3, 3]."""
    angle = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)[..., None]  # [..., 1, 1]
    k = w / angle[..., 0]
    zero = torch.zeros_like(k[..., 0])
    kx = torch.stack([zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero],
                     -1).view(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, device=w.device).expand_as(kx)
    return eye + torch.sin(angle) * kx + (1 - torch.cos(angle)) * kx @ kx


def _camera(st: _States, mesh: MeshTensors, target: Target) -> Camera:
    """The single state as a ``Camera`` for the full input image and the un-centred mesh."""
    r = st.rotation[0].double().cpu().numpy()
    t = st.translation[0].double().cpu().numpy() - r @ mesh.center
    fov = float(st.fov[0])
    side = max(target.width, target.height)
    ortho = side / float(st.pixel_scale[0]) if fov == 0 else 1.0
    depth = float(-st.translation[0, 2])
    return make_camera(r, t, target.width, target.height, fov=fov, ortho_scale=ortho,
                       clip_start=max(1e-3, 0.1 * (depth - mesh.radius)), clip_end=depth + 10 * mesh.radius)
