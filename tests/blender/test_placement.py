"""Results placed over their picture, in real Blender (bpy module, headless).

- A reference-image empty (rotated, moved, scaled, its picture off-centre): the relief, seen from the
  empty's viewpoint, covers the picture's alpha (IoU of the projected silhouette).
- A plain image: the view camera the add-on makes sees the relief where the picture has its alpha
  (projected with Blender's own ``world_to_camera_view``).
- Perspective cameras (as hi3dgen's alignment sends them), a malformed camera, the rollback, and the engine
  switches sent only to an engine that declares them: with the add-on's modules and no backend.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend.camera import look_at, make_camera
from tests.blender.blender_session import bpy, clear_scene, scene_snapshot
from tests.blender.test_extension import built_zip, ext  # noqa: F401 - module fixtures: the installed extension

mathutils = importlib.import_module("mathutils")  # Blender's modules: only after blender_session
world_to_camera_view = importlib.import_module("bpy_extras.object_utils").world_to_camera_view
mb = importlib.import_module("blender_addon.mesh_builder")
sources = importlib.import_module("blender_addon.sources")
job = importlib.import_module("blender_addon.job")
settings = importlib.import_module("blender_addon.settings")
view_objects = importlib.import_module("blender_addon.view_objects")

WIDTH, HEIGHT = 120, 80
IOU = 0.95
"The relief's outline follows the alpha within a fraction of a grid cell; the rest is the pixel raster."


def _alpha() -> np.ndarray:
    """[H, W] bool: an off-centre ellipse with a notch, so a flip, a shift or a wrong scale all show."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64) + 0.5
    inside = ((x - 0.6 * WIDTH) / (0.3 * WIDTH)) ** 2 + ((y - 0.42 * HEIGHT) / (0.35 * HEIGHT)) ** 2 < 1.0
    return inside & ~((x > 0.6 * WIDTH) & (x < 0.8 * WIDTH) & (y > 0.42 * HEIGHT) & (y < 0.6 * HEIGHT))


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = (180, 120, 60)
    rgba[..., 3] = _alpha() * 255
    path = tmp_path_factory.mktemp("place") / "blob.png"
    path.write_bytes(sources.encode_png(rgba))
    return path


@pytest.fixture(autouse=True)
def fresh_scene():
    clear_scene()
    bpy.context.scene.camera = None
    yield
    clear_scene()


def _world_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]


def _triangles(obj) -> np.ndarray:
    loops = np.empty(len(obj.data.loops), np.int32)
    obj.data.loops.foreach_get("vertex_index", loops)
    return loops.reshape(-1, 3)  # the add-on builds triangles only


def _silhouette(uv: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """[H, W] bool: pixel centres inside any triangle of ``uv`` [N, 2] (pixels, v down), either winding."""
    mask = np.zeros((height, width), bool)
    for a, b, c in uv[faces]:
        lo = np.maximum(np.floor(np.minimum(np.minimum(a, b), c)).astype(int), 0)
        hi = np.minimum(np.ceil(np.maximum(np.maximum(a, b), c)).astype(int), (width, height))
        if (hi <= lo).any():
            continue
        py, px = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]] + 0.5
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(area) < 1e-12:
            continue
        w0 = ((b[0] - px) * (c[1] - py) - (b[1] - py) * (c[0] - px)) / area
        w1 = ((c[0] - px) * (a[1] - py) - (c[1] - py) * (a[0] - px)) / area
        inside = (w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)
        mask[lo[1]:hi[1], lo[0]:hi[0]] |= inside
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _reference_empty(image) -> object:
    empty = bpy.data.objects.new("Ref", None)
    empty.empty_display_type = "IMAGE"
    empty.data = image
    empty.empty_display_size = 2.5
    empty.empty_image_offset = (-0.3, -0.65)  # the picture off the empty's origin
    empty.location = (2.0, -1.5, 0.7)
    empty.rotation_euler = (0.4, -0.7, 1.1)
    empty.scale = (1.3, 1.3, 1.3)
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.update()
    return empty


def _as_empty_shows(world: np.ndarray, empty) -> tuple[np.ndarray, np.ndarray]:
    """World points -> (pixels [N, 2] of the picture seen along the empty's -Z, local z [N]), computed here
    from Blender's own values (display size, offset, image size), independently of the add-on."""
    m = np.array(empty.matrix_world)
    local = (world - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    w, h = empty.data.size
    wl, hl = empty.empty_display_size * w / max(w, h), empty.empty_display_size * h / max(w, h)
    x0, y0 = empty.empty_image_offset[0] * wl, empty.empty_image_offset[1] * hl
    uv = np.stack([(local[:, 0] - x0) / wl * w, (y0 + hl - local[:, 1]) / hl * h], 1)
    return uv, local[:, 2]


@pytest.mark.parametrize("via", ["api", "panel"])
def test_relief_over_a_rotated_offset_empty_covers_its_picture(ext, picture, via):  # noqa: F811
    image = bpy.data.images.load(str(picture))
    empty = _reference_empty(image)
    if via == "api":
        obj = ext.api.generate(empty, engine="relief", resolution=96, faces=4000)
    else:  # the panel's Reference source: the active reference-image empty
        props = bpy.context.window_manager.hi3dgen
        props.source, props.engine = "EMPTY", "relief"
        bpy.context.view_layer.objects.active = empty
        try:
            assert bpy.ops.hi3dgen.generate(params_json='{"resolution": 96, "faces": 4000}') == {"FINISHED"}
        finally:
            props.source = "FILE"
        obj = bpy.context.view_layer.objects.active
    uv, depth = _as_empty_shows(_world_vertices(obj), empty)
    seen = _silhouette(uv, _triangles(obj), WIDTH, HEIGHT)
    iou = _iou(seen, _alpha())
    print(f"reference empty: IoU {iou:.4f}")
    assert iou > IOU, iou
    assert depth.min() > -1e-4, "the object stands in front of the picture"
    assert "hi3dgen_view" not in obj and not [o for o in bpy.data.objects if o.type == "CAMERA"]


def test_relief_from_a_file_gets_a_view_camera_that_sees_it_as_the_picture(ext, picture):  # noqa: F811
    scene = bpy.context.scene
    scene.cursor.location = (1.0, 2.0, 3.0)
    obj = ext.api.generate(str(picture), engine="relief", resolution=96, faces=4000)
    camera = bpy.data.objects[obj["hi3dgen_view"]]
    assert camera.name == "blob view" and scene.camera == camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, HEIGHT)
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0)), "the object stays at the cursor"
    background = camera.data.background_images[0].image
    assert camera.data.show_background_images and Path(bpy.path.abspath(background.filepath)) == picture
    uv = []
    for p in _world_vertices(obj):
        x, y, _ = world_to_camera_view(scene, camera, mathutils.Vector(p.tolist()))  # origin bottom-left
        uv.append((x * WIDTH, (1.0 - y) * HEIGHT))
    iou = _iou(_silhouette(np.array(uv), _triangles(obj), WIDTH, HEIGHT), _alpha())
    print(f"view camera: IoU {iou:.4f}")
    assert iou > IOU, iou


def test_the_scene_camera_is_kept_when_there_is_one(ext, picture):  # noqa: F811
    scene = bpy.context.scene
    mine = bpy.data.objects.new("Mine", bpy.data.cameras.new("Mine"))
    scene.collection.objects.link(mine)
    scene.camera = mine
    scene.render.resolution_x, scene.render.resolution_y = 640, 480
    obj = ext.api.generate(str(picture), engine="relief", resolution=32)
    assert scene.camera == mine and (scene.render.resolution_x, scene.render.resolution_y) == (640, 480)
    assert list(bpy.data.objects[obj["hi3dgen_view"]]["hi3dgen_resolution"]) == [WIDTH, HEIGHT]
    obj = ext.api.generate(str(picture), engine="relief", resolution=32, view_camera=False)
    assert "hi3dgen_view" not in obj


# --------------------------------------------------------------------------- perspective, no backend

def _mesh() -> dict[str, np.ndarray]:
    """A lopsided box in the mesh frame ([-0.5, 0.5]^3), triangles."""
    v = np.array([[x, y, z] for x in (-0.4, 0.3) for y in (-0.2, 0.45) for z in (-0.5, 0.35)], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int32)
    return {"vertices": v, "faces": faces}


def _perspective() -> object:
    r, t = look_at([1.2, -2.0, 0.8], [0.05, 0.0, -0.05])
    return make_camera(r, t, 160, 96, fov=math.radians(40))


def test_perspective_result_over_the_empty_projects_from_its_viewpoint_as_the_camera_saw_it():
    arrays, camera = _mesh(), _perspective()
    image = bpy.data.images.new("ref", camera.width, camera.height)
    empty = _reference_empty(image)
    (obj,) = mb.add_result(bpy.context, [("box", arrays)], None, settings.BuildOptions(),
                           mb.Placement.beside(empty), camera.to_dict())
    frame = mb.Placement.beside(empty).reference
    view = importlib.import_module("blender_addon.view_camera").parse_camera(camera.to_dict())
    seen = frame.to_picture(_world_vertices(obj), view)
    np.testing.assert_allclose(seen, camera.project(arrays["vertices"])[:, :2], atol=1e-3)
    m = np.array(empty.matrix_world)
    local = (_world_vertices(obj) - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    assert local[:, 2].min() == pytest.approx(0.0, abs=1e-4), "its far side touches the picture plane"
    eye = frame.viewpoint(view)
    x0, y0, w, h = frame.extent()
    fov = 2 * math.atan(0.5 * max(w, h) / eye[2])  # the picture, seen from the eye, fills the camera's fov
    assert fov == pytest.approx(camera.fov, abs=1e-6)
    scene, cam = bpy.context.scene, bpy.data.objects[obj["hi3dgen_view"]]  # a camera at that viewpoint
    assert scene.camera == cam and cam.data.background_images[0].image == image
    bpy.context.view_layer.update()
    for p, (u, v, _) in zip(_world_vertices(obj), camera.project(arrays["vertices"])):
        x, y, _ = world_to_camera_view(scene, cam, mathutils.Vector(p.tolist()))
        assert (x * camera.width, (1.0 - y) * camera.height) == pytest.approx((u, v), abs=1e-3)


def test_perspective_result_from_an_image_gets_the_camera_blender_projects_as_ours():
    arrays, camera = _mesh(), _perspective()
    bpy.context.scene.cursor.location = (-1.0, 0.5, 2.0)
    image = bpy.data.images.new("plain", camera.width, camera.height)
    placement = mb.Placement.at_cursor(bpy.context.scene, view_objects.Background(image=image.name))
    (obj,) = mb.add_result(bpy.context, [("box", arrays)], None, settings.BuildOptions(), placement,
                           camera.to_dict())
    scene, cam = bpy.context.scene, bpy.data.objects["box view"]
    assert scene.camera == cam and cam.data.type == "PERSP" and cam.data.background_images[0].image == image
    bpy.context.view_layer.update()
    expected = camera.project(arrays["vertices"])
    for p, (u, v, depth) in zip(_world_vertices(obj), expected):
        x, y, z = world_to_camera_view(scene, cam, mathutils.Vector(p.tolist()))
        assert (x * camera.width, (1.0 - y) * camera.height) == pytest.approx((u, v), abs=1e-3)
        assert z == pytest.approx(depth, abs=1e-4)


def test_a_malformed_camera_is_ignored_and_the_object_placed_as_before():
    image = bpy.data.images.new("ref", 64, 64)
    empty = _reference_empty(image)
    placement = mb.Placement.beside(empty)
    bad = {**_perspective().to_dict(), "rotation": [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}
    for camera in (bad, "nonsense", {"width": 10}):
        (obj,) = mb.add_result(bpy.context, [("box", _mesh())], None, settings.BuildOptions(), placement, camera)
        assert np.allclose(np.array(obj.matrix_world), np.array(placement.matrix), atol=1e-6)  # beside it
    assert not bpy.data.cameras


def test_a_failed_build_leaves_no_camera_and_no_loaded_image(picture, monkeypatch):
    before = scene_snapshot()
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("linking failed")

    monkeypatch.setattr(view_objects, "link_camera", broken)
    placement = mb.Placement.at_cursor(bpy.context.scene, view_objects.Background(path=str(picture)))
    with pytest.raises(RuntimeError, match="linking failed"):
        mb.add_result(bpy.context, [("box", _mesh())], None, settings.BuildOptions(), placement,
                      _perspective().to_dict())
    assert calls and scene_snapshot() == before  # camera, its data and the background image are gone too


# --------------------------------------------------------------------------- switches

def _job(engine_params: list[dict] | None, **kwargs) -> dict:
    engines = [] if engine_params is None else [{"name": "hi3dgen", "params": engine_params}]
    backend = SimpleNamespace(hello=SimpleNamespace(engines=engines), config=SimpleNamespace(prefix=[]))
    request = settings.GenerateSettings(image_name="x", image_bytes=b"png", engine="hi3dgen", **kwargs)
    return job.Job(backend, request)._request_message().params


def test_switches_go_only_to_an_engine_that_declares_them():
    switches = {"align": False, "refine": True, "texture": False}
    old = [{"name": "ss_steps", "type": "int"}, {"name": "align", "type": "bool"}]
    assert _job(old, optional_params=switches) == {"align": False}, "a backend from before refine/texture"
    new = [*old, {"name": "refine", "type": "bool"}, {"name": "texture", "type": "bool"}]
    assert _job(new, optional_params=switches) == switches
    assert _job(None, optional_params=switches) == {}, "an engine the handshake does not describe: none"
    explicit = _job(new, params={"align": True, "ss_steps": 3}, optional_params=switches)
    assert explicit == {**switches, "align": True, "ss_steps": 3}, "the explicit value wins"
    panel = _job(old, params={"ss_steps": 3, "resolution": 64}, strict_params=False, optional_params=switches)
    assert panel == {"ss_steps": 3, "align": False}


def test_panel_switches_and_the_view_camera_option_exist(ext):  # noqa: F811
    props = bpy.context.window_manager.hi3dgen
    assert props.switch_values() == {"align": True, "refine": True, "texture": True}
    assert props.view_camera is True


def test_the_panel_shows_the_switches_the_engine_declares(ext, monkeypatch):  # noqa: F811
    from tests.blender.test_extension import draw_panel

    props = bpy.context.window_manager.hi3dgen
    for declared, shown in ((["align"], ["align"]), (["align", "refine", "texture"], ["align", "refine", "texture"]),
                            ([], [])):
        engine = {"name": "hi3dgen", "label": "Hi3DGen", "available": True, "weights_present": True,
                  "params": [{"name": n, "type": "bool"} for n in ["ss_steps", *declared]]}
        monkeypatch.setattr(ext.generation, "last_hello", lambda engine=engine: SimpleNamespace(engines=[engine]))
        props.engine = "hi3dgen"
        toggles = [args[1] for name, args, kw in draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context)
                   if name == "prop" and kw.get("toggle")]
        assert toggles == shown
    monkeypatch.undo()
    props.engine = "relief"
