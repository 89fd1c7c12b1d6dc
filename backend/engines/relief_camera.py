"""The relief's own view: the orthographic camera, in the project's one convention, that sees the relief
mesh exactly where its foreground lies in the input image.

The relief is built over a grid resampled from a crop of the working image (the input shrunk by a whole
factor). Its UVs are an exact affine function of (x, z) (the front projection over the grid), so reading
that function back from the mesh gives the pixel of every point without knowing how the mesh builder
centred and scaled it. The camera looks along +Y (the relief faces -Y), +X right and +Z up on screen.
"""

from __future__ import annotations

import numpy as np

from ..camera import Camera, make_camera

FRONT_VIEW = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"World -> camera rotation of the front view: camera +X = world +X, +Y = world +Z, +Z (to the viewer) = -Y."
DISTANCE = 1.0
"The camera sits this far in front of the mesh's nearest point (orthographic: only the clipping cares)."


def relief_camera(vertices: np.ndarray, uvs: np.ndarray, box: tuple[slice, slice], grid: tuple[int, int],
                  factor: int, image_size: tuple[int, int]) -> Camera:
    """The orthographic front camera of a relief mesh for the input image (``image_size`` = (H, W)).

    ``vertices`` [V, 3] and ``uvs`` [V, 2] are the mesh's; ``box`` is the crop in the working image, ``grid``
    the (rows, cols) of the relief grid over it, ``factor`` the working image's shrink factor. Exact along
    the grid's long side; along the short one within half a grid cell (the grid's rows and columns are
    rounded, so the crop's pixels are not exactly square on it).
    """
    h, w = image_size
    crop_h, crop_w = box[0].stop - box[0].start, box[1].stop - box[1].start
    a_u, b_u = _line(vertices[:, 0], uvs[:, 0])  # u = a_u * x + b_u
    a_v, b_v = _line(vertices[:, 2], uvs[:, 1])  # v = a_v * z + b_v
    # input pixel: col = factor * (c0 + crop_w * u), row = factor * (r0 + crop_h * (1 - v))
    col_slope, col_zero = factor * crop_w * a_u, factor * (box[1].start + crop_w * b_u)
    row_slope, row_zero = factor * crop_h * a_v, factor * (box[0].start + crop_h * (1.0 - b_v))
    scale = col_slope if grid[1] >= grid[0] else row_slope  # pixels per world unit
    y = vertices[:, 1]
    near = float(y.min()) - DISTANCE  # the camera plane, world y
    translation = np.array([(col_zero - 0.5 * w) / scale, (0.5 * h - row_zero) / scale, near])
    far = float(y.max()) - near + DISTANCE
    return make_camera(FRONT_VIEW, translation, w, h, fov=0.0, ortho_scale=max(w, h) / scale,
                       clip_start=0.01, clip_end=far, meta={"source": "relief"})


def _line(x: np.ndarray, u: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of ``u`` over ``x``, from the points whose UVs were not clipped to [0, 1]."""
    x, u = np.asarray(x, np.float64), np.asarray(u, np.float64)
    inside = (u > 1e-6) & (u < 1.0 - 1e-6)
    if inside.sum() < 2 or np.ptp(x[inside]) <= 0.0:
        inside = np.ones(len(u), bool)
    slope, intercept = np.polyfit(x[inside], u[inside], 1)
    return float(slope), float(intercept)
