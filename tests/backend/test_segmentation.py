"""The relief engine's mask: alpha only when it carries a mask, a real segmentation otherwise, measured on the
rendered set (tests/fixtures/segmentation/, made by scripts/make_segmentation_set.py), and reported honestly:
source, coverage, confidence and a warning for a whole-frame or unsure mask, in the engine's stats, the
protocol's Done and the CLI's output."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from backend import protocol as P
from backend.engines.base import EngineRequest, validate_params
from backend.engines.relief import PARAMS, ReliefEngine
from backend.errors import Cancelled
from backend.images import LoadedImage, alpha_carries_mask, decode_image, load_image
from backend.jobs import JobContext
from backend.mask_report import report_mask
from backend.relief import segment
from backend.relief.mask import object_mask

from .conftest import BackendProcess, png_bytes
from .test_cli import run_cli

SET = Path(__file__).resolve().parents[1] / "fixtures" / "segmentation"
CASES = json.loads((SET / "manifest.json").read_text())["cases"]
FLOORS = {  # IoU each case reaches, about 0.03 under what bench/bench_segmentation.py measured
    "floor_monkey_red": 0.96, "floor_monkey_grey": 0.94, "floor_sphere_grey_soft": 0.94, "floor_table_brown": 0.95,
    "floor_box_orange_soft": 0.96, "wall_mug_blue": 0.96, "wall_torus_grey": 0.87, "wall_bottle_green": 0.96,
    "backdrop_monkey_green": 0.96, "backdrop_cone_grey": 0.96, "backdrop_bottle_yellow": 0.96,
    "white_monkey_noalpha": 0.96, "white_torus_opaque_alpha": 0.96, "white_mug_near_opaque_alpha": 0.96,
    "white_monkey_real_alpha": 0.97, "held_floor_cone_0": 0.95, "held_wall_monkey_1": 0.95,
    "held_backdrop_monkey_2": 0.96, "held_floor_box_3": 0.95, "held_wall_cone_4": 0.95,
    "held_backdrop_cone_5": 0.96, "held_floor_sphere_6": 0.96, "held_wall_bottle_7": 0.95,
    "held2028_floor_torus_0": 0.95, "held2028_wall_monkey_1": 0.95, "held2028_backdrop_sphere_2": 0.96,
    "held2028_floor_bottle_3": 0.96, "held2028_wall_box_4": 0.96, "held2028_backdrop_sphere_5": 0.96,
    "held2028_floor_table_6": 0.75, "held2028_wall_box_7": 0.94,
    "held2029_floor_mug_0": 0.95, "held2029_wall_monkey_1": 0.95, "held2029_backdrop_sphere_2": 0.96,
    "held2029_floor_table_3": 0.56, "held2029_wall_sphere_4": 0.96, "held2029_backdrop_mug_5": 0.96,
    "held2029_floor_mug_6": 0.86, "held2029_wall_mug_7": 0.95,
    "held2030_floor_monkey_0": 0.96, "held2030_wall_bottle_1": 0.96, "held2030_backdrop_sphere_2": 0.96,
    "held2030_floor_sphere_3": 0.93, "held2030_wall_torus_4": 0.95, "held2030_backdrop_bottle_5": 0.96,
    "held2030_floor_table_6": 0.6, "held2030_wall_torus_7": 0.95,
    "held2031_floor_torus_0": 0.96, "held2031_wall_monkey_1": 0.95, "held2031_backdrop_table_2": 0.88,
    "held2031_floor_table_3": 0.94, "held2031_wall_torus_4": 0.95, "held2031_backdrop_table_5": 0.96,
    "held2031_floor_bottle_6": 0.96, "held2031_wall_monkey_7": 0.96,
    "held2032_floor_table_0": 0.94, "held2032_wall_sphere_1": 0.95, "held2032_backdrop_mug_2": 0.96,
    "held2032_floor_bottle_3": 0.96, "held2032_wall_sphere_4": 0.96, "held2032_backdrop_bottle_5": 0.96,
    "held2032_floor_sphere_6": 0.96, "held2032_wall_mug_7": 0.96,
    "held2033_floor_box_0": 0.95, "held2033_wall_table_1": 0.95, "held2033_backdrop_bottle_2": 0.96,
    "held2033_floor_monkey_3": 0.95, "held2033_wall_mug_4": 0.96, "held2033_backdrop_monkey_5": 0.96,
    "held2033_floor_mug_6": 0.96, "held2033_wall_monkey_7": 0.96,
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def _truth(case: dict) -> np.ndarray:
    return load_image(str(SET / case["mask"])).rgba[..., 0] > 0.5


def _generate(image: LoadedImage, **params: object) -> dict:
    request = EngineRequest(image, "x", 0, validate_params(PARAMS, {"resolution": 32, **params}))
    return ReliefEngine().generate(request, JobContext()).stats["mask"]


def test_every_case_of_the_set_has_a_floor():
    assert sorted(FLOORS) == sorted(c["name"] for c in CASES)
    # The committed set stays small: 71 cases of 320x240 are 3.8 MB. The renders are noisy enough that a
    # lossless re-encode (the best PNG filter and zlib strategy per image) saves only 1.3 %, so the cap grew
    # from 2 MB to 2.5 MB with the fourth random draw (seed 2030), to 3.5 MB with the fifth and sixth
    # (2031, 2032) and to 4 MB with the seventh (2033; issue #13).
    assert sum(f.stat().st_size for f in SET.iterdir()) < 4_000_000


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_sets_cases_reach_their_iou_floor(case):
    found = object_mask(load_image(str(SET / case["image"])))
    assert _iou(found.mask, _truth(case)) >= FLOORS[case["name"]]
    assert found.report.coverage < 0.5 and not found.report.warning.startswith("The automatic mask covers")


def test_a_bad_estimate_is_flagged_and_a_good_one_is_not():
    bad = object_mask(load_image(str(SET / "floor_table_brown.png")))  # IoU about 0.8: shadow between the legs
    assert bad.report.confidence < 0.5 and "unsure" in bad.report.warning
    good = object_mask(load_image(str(SET / "backdrop_monkey_green.png")))
    assert good.report.confidence > 0.9 and good.report.warning == ""


def test_a_nearly_opaque_alpha_gives_the_silhouette_not_the_frame():
    case = next(c for c in CASES if c["alpha"] == "near_opaque")
    image = load_image(str(SET / case["image"]))
    assert not image.has_alpha and image.alpha_ignored and image.rgba[..., 3].min() == 0.0  # kept as decoded
    found = object_mask(image)
    assert found.report.source == "estimated" and found.report.alpha_ignored
    assert _iou(found.mask, _truth(case)) >= FLOORS[case["name"]]
    assert found.report.coverage < 2 * case["coverage"]  # the old rule took the whole frame (coverage 1.0)


def test_alpha_counts_only_when_it_carries_a_mask():
    alpha = np.ones((100, 100), np.float32)
    assert not alpha_carries_mask(alpha)
    alpha[:9, :9] = 0.0  # 0.81 % transparent: a stray corner, no mask
    assert not alpha_carries_mask(alpha)
    alpha[:12, :12] = 0.0  # 1.44 %: an object filling nearly the frame, still a mask
    assert alpha_carries_mask(alpha)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = 254  # "opaque" everywhere by the threshold
    image = decode_image(png_bytes(rgba))
    assert not image.has_alpha and image.alpha_ignored


def test_whole_frame_masks_are_reported_with_what_to_do():
    full = report_mask(np.ones((10, 10), bool), "alpha")
    assert full.coverage == 1.0 and "100% of the image" in full.warning and "alpha channel" in full.warning
    given = report_mask(np.ones((10, 10), bool), "given")
    assert "Check the mask image" in given.warning
    unsure = report_mask(np.eye(10, dtype=bool), "estimated", confidence=0.2)
    assert "unsure" in unsure.warning and "--mask" in unsure.warning
    fine = report_mask(np.eye(10, dtype=bool), "estimated", confidence=0.9)
    assert fine.warning == "" and fine.as_stats()["source"] == "estimated"


def _framed(size: int = 96) -> np.ndarray:
    """uint8 RGBA: opaque except a thin transparent strip along the top (97 % opaque: a mask, of nearly all)."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (180, 90, 40)
    rgba[..., 3] = 255
    rgba[:3, :, 3] = 0
    return rgba


def test_a_whole_frame_mask_is_in_the_engines_stats():
    stats = _generate(decode_image(png_bytes(_framed())))
    assert stats["source"] == "alpha" and stats["coverage"] > 0.9 and "whole frame" in stats["warning"]
    ok = _generate(decode_image(png_bytes(np.asarray(Image.open(SET / "white_monkey_real_alpha.png")))))
    assert ok["source"] == "alpha" and ok["warning"] == "" and ok["confidence"] == 1.0


def test_a_whole_frame_mask_is_reported_through_the_protocol():
    proc = BackendProcess()
    try:
        proc.expect(P.Hello)
        proc.send(P.Generate(image_bytes=np.frombuffer(png_bytes(_framed()), np.uint8), params={"resolution": 32}), 1)
        done = proc.collect(1)["done"]
        assert done is not None
        mask = done.stats["mask"]
        assert mask["source"] == "alpha" and mask["coverage"] > 0.9 and "whole frame" in mask["warning"]
        photo = np.frombuffer((SET / "backdrop_monkey_green.png").read_bytes(), np.uint8)
        proc.send(P.Normals(image_bytes=photo), 2)
        mask = proc.collect(2)["done"].stats["mask"]
        assert mask["source"] == "estimated" and 0.05 < mask["coverage"] < 0.2 and mask["warning"] == ""
    finally:
        proc.close()


def test_a_whole_frame_mask_is_a_warning_line_in_the_cli(tmp_path):
    Image.fromarray(_framed()).save(tmp_path / "slab.png")
    (tmp_path / "good.png").write_bytes((SET / "white_monkey_real_alpha.png").read_bytes())
    code, err = run_cli("generate", str(tmp_path / "slab.png"), str(tmp_path / "good.png"), "-o",
                        str(tmp_path / "out"), "--param", "resolution=32")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING: ") and "slab.png" in lines[0]
    assert "whole frame" in lines[0] and "--mask" in lines[0]
    assert (tmp_path / "out" / "slab.glb").is_file()  # still written: a warning, not a failure


def test_segmentation_runs_at_a_bounded_size_and_upsamples_the_mask(monkeypatch):
    seen: list[tuple[int, ...]] = []
    original = segment._grabcut
    monkeypatch.setattr(segment, "_grabcut", lambda rgb, seeds: seen.append(rgb.shape) or original(rgb, seeds))
    photo = load_image(str(SET / "backdrop_bottle_yellow.png")).rgba[..., :3]  # 320 x 240
    big = np.asarray(Image.fromarray((photo * 255).astype(np.uint8)).resize((1280, 960)), np.float32) / 255
    found = segment.segment_object(big)
    assert seen == [(384, 512, 3)] * 2 and found.mask.shape == (960, 1280)  # two hypotheses, both small
    small = segment.segment_object(photo)
    grown = np.asarray(Image.fromarray(small.mask).resize((1280, 960), Image.Resampling.NEAREST))
    assert _iou(found.mask, grown) > 0.95


def test_segmentation_checks_cancel_between_stages():
    calls = []
    cancel = threading.Event()

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            cancel.set()
        if cancel.is_set():
            raise Cancelled("cancelled")

    photo = load_image(str(SET / "floor_monkey_red.png")).rgba[..., :3]
    with pytest.raises(Cancelled):
        segment.segment_object(photo, check)
    assert len(calls) == 2  # stopped at the second stage boundary, before GrabCut
    every: list[int] = []
    segment.segment_object(photo, lambda: every.append(1))
    assert len(every) >= 3


def test_a_masks_holes_stay_open_but_their_rim_may_move():
    yy, xx = np.mgrid[0:100, 0:100]
    r = np.hypot(yy - 50.0, xx - 50.0)
    ring = (r < 40) & (r >= 15)  # a torus seen face-on: its hole shows the backdrop
    kept = segment.kept_holes(ring)
    assert kept[r < 12].all() and not kept[r >= 14.5].any()  # the hole less a 1 px rim the refinement may move
    assert not segment.kept_holes(r < 40).any()  # a disc has no hole


def test_the_plain_hypothesis_wins_a_tie_when_it_is_much_larger_unless_it_adds_the_found_shadow():
    sharp = np.ones((60, 60), np.float32)  # every outline on a sharp edge: all scores tie
    small = np.zeros((60, 60), bool)
    small[20:30, 20:30] = True
    large = np.zeros_like(small)
    large[10:50, 10:50] = True
    chosen, _ = segment._choose([small, small, large], sharp, np.zeros_like(small))
    assert chosen is large  # the shadow model took most of a dark object for shadow
    chosen, _ = segment._choose([large, large, small], sharp, np.zeros_like(small))
    assert chosen is large  # a smaller plain mask never wins a tie
    shadow = large & ~small
    chosen, _ = segment._choose([small, small, large], sharp, shadow)
    assert chosen is small  # what the plain mask adds is the cast shadow found: a hard-edged shadow, no object


def test_the_plain_hypothesis_wins_a_tie_against_whichever_hypothesis_leads():
    small = np.zeros((60, 60), bool)
    small[20:30, 20:30] = True
    large = np.zeros_like(small)
    large[10:50, 10:50] = True
    first = np.zeros_like(small)
    first[31:49, 31:49] = True  # its outline on no edge: the plain cut (a third of its size) leads over it
    sharp = np.zeros((60, 60), np.float32)
    for m in (small, large):
        sharp[ndimage.binary_dilation(m) ^ ndimage.binary_erosion(m)] = 1.0
    chosen, _ = segment._choose([first, first, small, large], sharp, np.zeros_like(small))
    assert chosen is large  # the plain cut cut a dark object's legs off at an edge; the plain mask kept them


def test_a_hypothesis_that_collapsed_to_a_few_pixels_never_wins_on_its_outline_score():
    sharp = np.full((60, 60), 0.6, np.float32)
    sharp[30:33, 30:33] = 1.0  # a speck on a sharp edge: its outline scores 1, the object's 0.6
    refined = np.zeros((60, 60), bool)
    refined[10:50, 10:50] = True
    speck = np.zeros_like(refined)
    speck[31, 31] = True
    chosen, score = segment._choose([refined, refined, speck, refined], sharp, np.zeros_like(refined))
    assert chosen is refined and score == pytest.approx(0.6)


def test_a_plateau_of_the_backdrops_light_inside_the_mask_is_dropped_a_shaded_face_is_not():
    """The lit floor seen between a table's legs: backdrop-coloured, one constant fraction of the predicted
    light, edged where it meets the rest of the mask. A face shaded across the same levels stays."""
    lab = np.zeros((80, 80, 3), np.float32)
    lab[..., 0] = 70.0  # the backdrop, everywhere
    background = lab.copy()
    table = np.zeros((80, 80), bool)
    table[5:25, 10:70] = True  # the top
    table[25:55, 10:20] = table[25:55, 60:70] = True  # two legs
    lab[table, 0] = 35.0  # darker than the floor: edged against it
    mask = table.copy()
    mask[25:55, 20:60] = True  # the estimate closed the floor between the legs (under half the mask)
    lab[25:55, 20:60, 0] = 69.0  # ... which is lit floor, a little occluded
    out = segment.drop_backdrop_plateaus(mask, lab, background)
    assert out[table].all() and not out[28:55, 23:57].any()  # the table kept, the floor between dropped
    assert not (out & ~ndimage.binary_dilation(table, iterations=2)).any()  # but for the edged rim by the legs
    shaded = lab.copy()
    shaded[25:55, 20:60, 0] = np.linspace(62.0, 74.0, 40)[None, :]  # a face shaded across the floor's levels
    assert np.array_equal(segment.drop_backdrop_plateaus(mask, shaded, background), mask)
