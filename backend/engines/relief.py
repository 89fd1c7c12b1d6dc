"""The weightless relief engine: mask -> normals -> integrated height -> closed relief mesh.

Faithful to the input view by construction and fast on any CPU. Normals come from a normal map the user
gives, from NiRNE when its weights are present, or from an inflated silhouette.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import BadInput
from ..images import LoadedImage
from ..jobs import JobContext
from ..mask_report import MaskReport, report_mask
from ..nirne.matting import MattingProvider, choose_matting, image_for_mask
from ..nirne.segmentation import foreground_mask as segment
from ..normalmap import from_colors, normalize
from ..relief.detail import shape_luminance
from ..relief.inflate import height_to_normals, inflated_height
from ..relief.integrate import integrate_normals
from ..relief.mask import clean_mask, object_mask
from ..relief.mesh import relief_mesh
from .base import EngineRequest, EngineResult, MeshData, NormalMapData, ParamSpec
from .relief_camera import relief_camera

NormalEstimator = Callable[[np.ndarray, np.ndarray, JobContext], np.ndarray]

DEFAULT_FACES = 40_000
"The relief's default face budget (see bench/bench_relief_geometry.py for what it costs in accuracy)."
OUTLINE_SIGMA = 0.8
"Blur (in grid cells) of the mask's coverage before its outline is traced: no pixel staircase."
OUTLINE_KEEP = 0.3
"Cells covered over 0.5 + this stay inside whatever the blur says: thin parts and sharp corners."

PARAMS = (
    ParamSpec("resolution", "int", 256, "Grid cells along the image's long side (mesh detail).", 16, 1024),
    ParamSpec("depth", "float", 0.5, "Relief depth: 1 keeps the integrated depth, 0 is flat.", 0.0, 4.0),
    ParamSpec("thickness", "float", 0.05, "Thickness of the back slab, relative to the object's size.", 0.0, 1.0),
    ParamSpec("normals", "enum", "auto", "Where normals come from (auto: given, then NiRNE, then inflate).",
              options=("auto", "inflate", "nirne", "given")),
    ParamSpec("mask", "enum", "auto", "Foreground: auto (the alpha channel, else the learned model when its "
              "weights are present, else the automatic segmentation); estimate or learned force that "
              "source and ignore the alpha.",
              options=("auto", "estimate", "learned")),
    ParamSpec("detail", "float", 0.5, "With inflated normals: surface detail taken from the image's shading.",
              0.0, 4.0),
    ParamSpec("detail_mode", "enum", "shape", "Which shading becomes detail: shape (an edge-aware filter drops "
              "the picture's texture: fur, print, noise) or texture (every luminance detail is embossed).",
              options=("shape", "texture")),
    ParamSpec("faces", "int", DEFAULT_FACES, "Decimate the relief to about this many faces, the outline kept "
              "(0 keeps the full grid mesh: about 4 faces per covered cell).", 0, 20_000_000),
)
MARGIN = 0.02
WORK_SIDE = 2048
"The engine works on the image scaled to at most this long side (the largest normal map it sends)."
BLUR_SIGMA = 4.0
"Wide blurs run at a scale where their sigma is about this many pixels."


class ReliefEngine:
    name = "relief"
    label = "Relief (fast, no weights)"
    description = "A closed 2.5D relief of the image's foreground, in about a second on a CPU."
    params = PARAMS

    def __init__(self, estimator: Callable[[str], NormalEstimator | None] | None = None,
                 matting: MattingProvider | None = None) -> None:
        self._estimator = estimator or (lambda placement_name: None)
        self._matting = matting

    def status(self) -> dict[str, Any]:
        return {"available": True, "weights_present": True, "missing": []}

    def release(self) -> None:
        if self._matting is not None:
            self._matting.release()

    def normals(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        prep = self._prepare(request, ctx)
        full_n, full_m = _uncrop(prep.normals, prep.mask, prep.box, prep.shape)  # the working image's size
        return EngineResult(normal_map=NormalMapData(full_n, full_m),
                            stats={"normals": prep.normals_source, "mask": prep.mask_report.as_stats()})

    def generate(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        t0 = time.perf_counter()
        refuse_views(request)
        prep = self._prepare(request, ctx)
        mask, normals = prep.mask, prep.normals
        p = request.params
        ctx.step("relief", 2, 4, "integrating normals")
        field, cell_normals = _to_grid(mask, normals, p["resolution"])
        cells = field >= 0.5
        ctx.check()
        height = integrate_normals(cell_normals, cells)
        ctx.step("relief", 3, 4, "building mesh")
        scale = 1.0 / max(cells.shape)
        relief = relief_mesh(height * scale * p["depth"], field, p["thickness"], ctx.check, p["faces"])
        mesh = MeshData(request.name, relief.vertices, relief.faces, uvs=relief.uvs)
        ctx.step("relief", 4, 4, "done")
        camera = relief_camera(relief.vertices, relief.uvs, prep.box, cells.shape,
                               work_factor(request.image.rgba.shape[:2]), request.image.rgba.shape[:2])
        stats = {"normals": prep.normals_source, "mask": prep.mask_report.as_stats(), "grid": list(cells.shape),
                 "faces": int(len(relief.faces)), "camera": camera.to_dict(),
                 "seconds": time.perf_counter() - t0}
        return EngineResult(meshes=[mesh], normal_map=NormalMapData(normals, mask), stats=stats,
                            base_color=prep.rgba)

    def _prepare(self, request: EngineRequest, ctx: JobContext) -> _Prepared:
        """Foreground crop (RGBA, mask), its normals, where both came from, the crop box and the working image
        (the input scaled to at most ``WORK_SIDE``)."""
        ctx.step("relief", 0, 4, "finding the foreground")
        image = image_for_mask(working_image(request.image), request.params["mask"])
        ctx.check()
        matting = choose_matting(self._matting, request.params["mask"], request.placement_name, image.has_alpha)
        if matting is not None:  # the same thresholding as the hi3dgen engine's, then specks removed
            mask = clean_mask(segment(image.rgba, "learned", matting))
            report = report_mask(mask, "learned", alpha_ignored=image.alpha_ignored)
        else:
            mask, report = object_mask(image, ctx.check)
        if mask.sum() < 16:
            raise BadInput("No foreground object was found in the image.",
                           hint="Use an image with a transparent background or a plain one around the object, "
                                "or give a mask image (panel: Mask; command line: --mask; API: mask_path).")
        box = _crop_box(mask)
        rgba, mask = image.rgba[box], mask[box]
        ctx.step("relief", 1, 4, "normals")
        normals, source = self._normals(request, image, rgba, mask, box, ctx)
        return _Prepared(rgba, mask, normals, source, box, report, image.rgba.shape[:2])

    def _normals(self, request: EngineRequest, image: LoadedImage, rgba: np.ndarray, mask: np.ndarray,
                 box: tuple[slice, slice], ctx: JobContext) -> tuple[np.ndarray, str]:
        choice = request.params["normals"]
        if choice in ("auto", "given") and request.normal_map is not None:
            return _given_normals(request.normal_map, image.rgba.shape[:2], box, mask), "given"
        if choice == "given":
            raise BadInput("Normals 'given' was chosen but no normal map was supplied.",
                           hint="Supply a normal-map image, or choose 'auto'.")
        estimator = self._estimator(request.placement_name) if choice in ("auto", "nirne") else None
        if estimator is not None:
            return estimator(rgba, mask, ctx), "nirne"
        if choice == "nirne":
            raise BadInput("NiRNE weights are not available.",
                           hint="Download them (python -m backend download yoso-normal) or choose 'inflate'.")
        height = inflated_height(mask)
        ctx.check()
        if request.params["detail"] > 0.0:
            height = height + request.params["detail"] * shading_detail(rgba, mask, request.params["detail_mode"])
            ctx.check()
        return height_to_normals(height, mask), "inflate"


def shading_detail(rgba: np.ndarray, mask: np.ndarray, mode: str = "shape") -> np.ndarray:
    """Height detail [H, W] in pixels from the image's shading: bright bulges out, dark recedes.

    A high-pass of the luminance (features smaller than about a tenth of the object), scaled to the
    object's size; a cheap, classic stand-in for real normal estimation. ``mode`` "shape" first smooths
    the picture's texture away with an edge-aware filter; "texture" embosses the luminance as it is.
    """
    lum = rgba[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)  # [H, W]
    if mode == "shape":
        lum = shape_luminance(lum, mask)
    size = float(np.sqrt(mask.sum()))
    sigma = max(1.0, 0.08 * size)
    weight = _blur(mask.astype(np.float32), sigma)
    low = _blur(np.where(mask, lum, 0.0).astype(np.float32), sigma) / np.maximum(weight, 1e-3)
    detail = ndimage.gaussian_filter(lum - low, 0.6) * 0.15 * size
    return np.where(mask, detail, 0.0).astype(np.float32)


def _blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of [H, W]; wide blurs run on a copy shrunk so sigma is about BLUR_SIGMA pixels.

    The result of a wide blur is smooth, so blurring small and scaling back costs nothing visible and
    keeps the cost independent of sigma (a full-size blur of sigma 160 takes tens of seconds).
    """
    factor = int(sigma // BLUR_SIGMA)
    if factor < 2:
        return ndimage.gaussian_filter(plane, sigma)
    h, w = plane.shape
    small = _resize(plane, (max(1, h // factor), max(1, w // factor)))  # area average
    blurred = ndimage.gaussian_filter(small, sigma * small.shape[0] / h)
    back = Image.fromarray(blurred.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(back, dtype=np.float32)


def working_image(image: LoadedImage, side: int = WORK_SIDE) -> LoadedImage:
    """``image`` shrunk by a whole factor (block average) so its long side is at most ``side``.

    The same object when it is small enough; the last few rows and columns that do not fill a block are
    dropped (fewer than the factor, at most 8 pixels).
    """
    h, w = image.rgba.shape[:2]
    k = work_factor((h, w), side)
    if k < 2:
        return image
    h2, w2 = h // k, w // k
    rows = image.rgba[:h2 * k, :w2 * k].reshape(h2, k, w2 * k * 4).sum(axis=1)  # [h2, w2 * k * 4]
    blocks = rows.reshape(h2, w2, k, 4).sum(axis=2) * np.float32(1.0 / (k * k))  # [h2, w2, 4]
    return replace(image, rgba=blocks.astype(np.float32))


def work_factor(shape: tuple[int, ...], side: int = WORK_SIDE) -> int:
    """The whole factor ``working_image`` shrinks an image of ``shape`` (H, W, ...) by (1: not shrunk)."""
    return max(1, -(-max(shape[0], shape[1]) // side))


def _crop_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask)
    pad = int(MARGIN * max(mask.shape)) + 1
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    return slice(r0, r1), slice(c0, c1)


class _Prepared(NamedTuple):
    rgba: np.ndarray  # [h, w, 4] the foreground's crop
    mask: np.ndarray  # [h, w] bool
    normals: np.ndarray  # [h, w, 3]
    normals_source: str
    box: tuple[slice, slice]  # the crop in the working image
    mask_report: MaskReport  # where the mask came from, its coverage of the working image, confidence, warning
    shape: tuple[int, int]  # the working image's (H, W)


def _uncrop(normals: np.ndarray, mask: np.ndarray, box: tuple[slice, slice],
            shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cropped normals and mask back into the full image (flat normals, empty mask outside the crop)."""
    full_n = np.zeros((*shape, 3), np.float32)
    full_n[..., 2] = 1.0
    full_m = np.zeros(shape, bool)
    full_n[box], full_m[box] = normals, mask
    return full_n, full_m


def _given_normals(normal_map: LoadedImage, shape: tuple[int, int], box: tuple[slice, slice],
                   mask: np.ndarray) -> np.ndarray:
    h, w = shape
    rgb = normal_map.rgba[..., :3]
    if rgb.shape[:2] != (h, w):
        rgb = _resize(rgb, (h, w))
    n = from_colors(rgb[box])
    n[~mask] = (0.0, 0.0, 1.0)
    return n


def _resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float [H, W, C] or [H, W] array with area averaging (Pillow, per channel)."""
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = [np.asarray(Image.fromarray(planes[..., c].astype(np.float32), mode="F")
                      .resize((shape[1], shape[0]), Image.Resampling.BOX)) for c in range(planes.shape[2])]
    stacked = np.stack(out, axis=-1)
    return stacked[..., 0] if arr.ndim == 2 else stacked


def _to_grid(mask: np.ndarray, normals: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask [h, w] in [0, 1] and normals [h, w, 3] resampled to a grid of ``resolution`` cells along
    the long side.

    The soft mask's 0.5 iso-line is the mesh's outline; see ``soft_grid``.
    """
    return soft_grid(mask, resolution), normalize(_resize(normals, _grid_shape(mask.shape, resolution)))


def soft_grid(mask: np.ndarray, resolution: int) -> np.ndarray:
    """The smoothed coverage [h, w] in [0, 1] of a bool ``mask`` on the grid of ``resolution`` cells (long
    side): area-averaged, then blurred by ``OUTLINE_SIGMA`` cells so its 0.5 iso-line follows the
    silhouette at sub-cell precision (within 0.1 cell of a disc sampled at 4 pixels a cell) without the
    pixel staircase; well-covered cells are kept so the blur does not erase parts a cell or two wide.
    """
    coverage = _resize(mask.astype(np.float32), _grid_shape(mask.shape, resolution))
    smooth = ndimage.gaussian_filter(coverage, OUTLINE_SIGMA)
    return np.clip(np.maximum(smooth, coverage - OUTLINE_KEEP), 0.0, 1.0)


def _grid_shape(shape: tuple[int, ...], resolution: int) -> tuple[int, int]:
    h, w = shape[:2]
    scale = resolution / max(h, w)
    return max(2, round(h * scale)), max(2, round(w * scale))


def refuse_views(request: EngineRequest) -> None:
    """The relief is one picture's height field: several views are refused, naming the engine that uses them."""
    if request.views:
        raise BadInput(f"The relief engine makes a relief from one picture, not {1 + len(request.views)} views.",
                       hint="Use the hi3dgen engine for several views of one object, or pass one image.",
                       code="bad_input")
