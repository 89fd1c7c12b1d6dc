"""Generators: seeded and reproducible, closed meshes, and the image-to-3D wrapper's note without weights."""

from __future__ import annotations

import numpy as np

from backend.settings import BackendSettings
from synthesis.filters.shape import component_count
from synthesis.filters.topology import open_edge_count
from synthesis.generators.hard_surface import HardSurfaceGenerator
from synthesis.generators.image_to_3d import ImageTo3DGenerator
from synthesis.generators.organic import OrganicGenerator


def test_procedural_generators_are_reproducible_and_closed():
    for generator in (HardSurfaceGenerator(48), OrganicGenerator(48)):
        a = generator.generate(f"{generator.name}-00001", 5)
        b = generator.generate(f"{generator.name}-00001", 5)
        other = generator.generate(f"{generator.name}-00002", 5)
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
        assert len(a.faces) != len(other.faces) or not np.array_equal(a.vertices, other.vertices)
        assert open_edge_count(a.faces) == 0 and a.volume() > 0  # closed and oriented outwards
        assert component_count(a) >= 1
        assert generator.unavailable() == ""
        assert generator.asset_ids(2) == [f"{generator.name}-00000", f"{generator.name}-00001"]


def test_image_to_3d_without_weights_is_skipped_with_a_note(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a cat.png").write_bytes(b"not read yet")
    (folder / "notes.txt").write_text("ignored")
    generator = ImageTo3DGenerator(str(folder), BackendSettings(weights_dir=str(tmp_path / "no-weights")))
    assert generator.asset_ids(10) == ["image_to_3d-a_cat"]
    note = generator.unavailable()
    assert note.startswith("image_to_3d skipped: the hi3dgen weights are missing")
    assert "not a folder" in ImageTo3DGenerator(str(tmp_path / "nope"), BackendSettings()).unavailable()
