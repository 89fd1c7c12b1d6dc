"""Input pictures from Blender data: image files, packed and generated images, reference-image empties."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from tests.blender.blender_session import bpy, clear_scene, write_png

sources = importlib.import_module("blender_addon.sources")  # imports bpy: only after blender_session

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def empty_scene():
    clear_scene()


def test_file_and_missing_file(tmp_path):
    path = write_png(tmp_path / "cat.png")
    picture = sources.picture_from_file(str(path))
    assert picture.name == "cat" and picture.data == path.read_bytes()
    with pytest.raises(sources.SourceProblem, match="not found"):
        sources.picture_from_file(str(tmp_path / "dog.png"))
    with pytest.raises(sources.SourceProblem, match="Choose an image file"):
        sources.picture_from_file("")


def test_loaded_packed_and_generated_images(tmp_path):
    path = write_png(tmp_path / "owl.png")
    loaded = bpy.data.images.load(str(path))
    assert sources.picture_from_image(loaded).data == path.read_bytes()
    loaded.pack()
    assert sources.picture_from_image(loaded).data == path.read_bytes()
    generated = bpy.data.images.new("painted", 8, 4)
    pixels = np.tile(np.array([1.0, 0.0, 0.0, 1.0], np.float32), 32)
    pixels[-4:] = (0.0, 0.0, 1.0, 1.0)  # Blender's last pixel: the top right one
    generated.pixels.foreach_set(pixels)
    picture = sources.picture_from_image(generated)
    assert picture.name == "painted" and picture.data.startswith(PNG_MAGIC)
    assert generated.source == "GENERATED" and generated.filepath == "", "the user's image is untouched"
    (tmp_path / "round.png").write_bytes(picture.data)
    back = bpy.data.images.load(str(tmp_path / "round.png"))
    read = np.empty(8 * 4 * 4, np.float32)
    back.pixels.foreach_get(read)
    np.testing.assert_allclose(read, pixels)


def test_reference_empty_is_the_source(tmp_path):
    image = bpy.data.images.load(str(write_png(tmp_path / "fox.png")))
    empty = bpy.data.objects.new("ref", None)
    empty.empty_display_type = "IMAGE"
    empty.data = image
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty

    class Props:
        source = "EMPTY"

    picture = sources.picture_from_context(bpy.context, Props())
    assert picture.name == "fox" and picture.reference == empty
    bpy.context.view_layer.objects.active = None
    with pytest.raises(sources.SourceProblem, match="reference-image empty"):
        sources.picture_from_context(bpy.context, Props())
