"""Untrusted configs and data: each bad input is refused with a message naming the key or file."""

from __future__ import annotations

import numpy as np
import pytest

from training.cli import main
from training.config import config_from_dict, load_config
from training.data import DataError, list_assets, load_asset
from training.synthetic import write_asset


def _asset(**changes: np.ndarray) -> dict[str, np.ndarray]:
    normals = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (5, 1))
    base = {"cond": np.zeros((4, 32), np.float32), "ss_latent": np.zeros((8, 16, 16, 16), np.float32),
            "surface_points": np.zeros((5, 3), np.float32), "surface_normals": normals}
    return {**base, **changes}


@pytest.mark.parametrize("train, message", [
    ({"steps": 0}, "train.steps"), ({"lr": "fast"}, "finite number"), ({"batch_size": True}, "integer"),
    ({"precision": "fp8"}, "one of"), ({"export_name": "../x"}, "plain file name"), ({"stepz": 1}, "unknown key"),
])
def test_bad_config_values_name_their_key(train, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"train": train})


def test_a_config_file_is_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nsteps = 3\n[oops]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown table"):
        load_config(path)
    path.write_text("[train\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
    path.write_text('[train]\nsteps = 3\nbetas = [0.9, 0.95]\n[model]\noverrides = { patch_size = 2 }\n')
    config = load_config(path)
    assert config.train.steps == 3 and config.train.betas == (0.9, 0.95) and config.model.overrides["patch_size"] == 2


@pytest.mark.parametrize("changes, message", [
    ({"ss_latent": np.zeros((8, 8, 8, 8), np.float32)}, "ss_latent' has shape"),
    ({"cond": np.zeros((4, 32), np.int64)}, "expected float32"),
    ({"cond": np.full((4, 32), np.nan, np.float32)}, "NaN"),
    ({"surface_points": np.ones((5, 3), np.float32)}, "leave the cube"),
    ({"surface_normals": np.ones((5, 3), np.float32)}, "not unit vectors"),
])
def test_bad_assets_name_the_file_and_array(tmp_path, changes, message):
    path = tmp_path / "a.npz"
    write_asset(path, _asset(**changes))
    with pytest.raises(DataError, match=message):
        load_asset(path, need_surface=True)


def test_not_an_npz_and_an_empty_folder(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_asset(tmp_path / "bad.npz", need_surface=False)
    with pytest.raises(DataError, match="is not a folder"):
        list_assets(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npz"):
        list_assets(tmp_path / "empty")


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, cond=np.array([{"a": 1}], dtype=object), ss_latent=np.zeros((8, 16, 16, 16), np.float32))
    with pytest.raises(DataError):
        load_asset(path, need_surface=False)


def test_the_command_line_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nsteps = -1\n", encoding="utf-8")
    assert main(["ss-flow", "--config", str(path), "--data", str(tmp_path)]) == 2
    assert "train.steps" in capsys.readouterr().err
