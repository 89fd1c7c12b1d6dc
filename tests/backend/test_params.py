"""Request values are checked by type and range before anything runs: a clear ``bad_input``, never ``internal``.

In process: every engine's ParamSpec against any JSON value. Through the real subprocess: literal JSON the
encoder would never write (NaN, 1e400, 400-digit numbers), every request field sent as the wrong JSON type,
and a Hypothesis property over whole ``Generate`` params against the relief engine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import protocol as P
from backend.engines.base import MAX_SEED, ParamSpec, check_seed, validate_params
from backend.engines.hi3dgen import Hi3DGenEngine
from backend.engines.relief import ReliefEngine
from backend.engines.testing import SlowEngine
from backend.errors import BadInput

from .conftest import BackendProcess, blob_rgba, png_bytes

SPECS = {"relief": ReliefEngine.params, "hi3dgen": Hi3DGenEngine.params, "test-slow": SlowEngine.params}
RELIEF_NAMES = [p.name for p in ReliefEngine.params]
ALL_NAMES = sorted({p.name for specs in SPECS.values() for p in specs})
ODD_STRINGS = ["nan", "NaN", "-inf", "inf", "Infinity", "1e400", "3", "true", "auto", "inflate", "", "\0", "x" * 5000]

leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
          | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(ODD_STRINGS) | st.text(max_size=30)
          | st.sampled_from([10**400, -(10**400), 2**63, 2**64, 16.0, 1024.0, 3.5, -0.0]))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
param_keys = st.sampled_from(ALL_NAMES) | st.text(max_size=16)


def _reply_ok(spec: ParamSpec, value: Any, out: Any) -> None:
    """What a checked value must be when it was accepted."""
    if spec.type == "bool":
        assert out is value and isinstance(value, bool)
    elif spec.type == "enum":
        assert isinstance(out, str) and out in spec.options
    else:
        assert type(out) is (int if spec.type == "int" else float) and math.isfinite(out)
        assert not isinstance(value, (bool, str)) and out == value
        assert (spec.min is None or out >= spec.min) and (spec.max is None or out <= spec.max)


# ------------------------------------------------------------------------------------------ in process


@settings(max_examples=1500, deadline=None)
@given(engine=st.sampled_from(sorted(SPECS)), params=st.dictionaries(param_keys, json_values, max_size=4))
def test_validate_params_returns_checked_values_or_bad_input(engine, params):
    specs = SPECS[engine]
    try:
        out = validate_params(specs, params)
    except BadInput as exc:
        assert exc.message and exc.hint and len(exc.message) < 400 and len(exc.hint) < 400
        return
    assert set(out) == {s.name for s in specs}
    for spec in specs:
        if spec.name in params:
            _reply_ok(spec, params[spec.name], out[spec.name])


@settings(max_examples=500, deadline=None)
@given(value=json_values)
def test_non_objects_are_refused_as_params(value):
    if isinstance(value, dict):
        return
    with pytest.raises(BadInput, match="must be a JSON object"):
        validate_params(ReliefEngine.params, value)


INT = ParamSpec("resolution", "int", 256, "", 16, 1024)
FLOAT = ParamSpec("depth", "float", 0.5, "", 0.0, 4.0)
BOOL = ParamSpec("fill", "bool", False, "")
ENUM = ParamSpec("normals", "enum", "auto", "", options=("auto", "inflate"))


@pytest.mark.parametrize(("spec", "value", "expected"), [
    (INT, 64, 64), (INT, 64.0, 64), (INT, 1024, 1024), (FLOAT, 1, 1.0), (FLOAT, 0.25, 0.25),
    (BOOL, True, True), (ENUM, "inflate", "inflate"),
])
def test_accepted_values(spec, value, expected):
    out = spec.check(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(("spec", "value"), [
    (INT, 64.5), (INT, "64"), (INT, True), (INT, float("nan")), (INT, float("inf")), (INT, 10**400), (INT, 15),
    (INT, 1025), (INT, None), (INT, [64]), (FLOAT, float("nan")), (FLOAT, float("-inf")), (FLOAT, "nan"),
    (FLOAT, "0.5"), (FLOAT, 10**400), (FLOAT, False), (FLOAT, 4.5), (BOOL, 1), (BOOL, 0), (BOOL, "true"),
    (BOOL, None), (ENUM, ["auto"]), (ENUM, {"a": 1}), (ENUM, 1), (ENUM, "Auto"), (ENUM, None),
])
def test_refused_values(spec, value):
    with pytest.raises(BadInput) as info:
        spec.check(value)
    assert spec.name in info.value.message and info.value.hint and len(info.value.message) < 200


def test_unknown_names_are_listed_shortly():
    with pytest.raises(BadInput, match="Unknown parameter") as info:
        validate_params(ReliefEngine.params, {f"k{i}" * 50: 1 for i in range(100)})
    assert "and 92 more" in info.value.message and len(info.value.message) < 1000


def test_seed_range():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    for bad in (-1, MAX_SEED + 1, 2**63, True, 1.0, "1", None):
        with pytest.raises(BadInput, match="seed"):
            check_seed(bad)


# ------------------------------------------------------------------------------------------ subprocess

SMALL_PNG = np.frombuffer(png_bytes(blob_rgba(24)), np.uint8)
LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, '"nan"', '"-inf"', '"1e400"',
            "[1]", '{"a": [1]}', "null", "true", '"' + "x" * 200_000 + '"', "4.5"]


def _raw_generate(fields: str, request_id: int) -> bytes:
    """A Generate frame whose JSON is written by hand (literals json.dumps would never write)."""
    arrays = f'"arrays": [{{"name": "image_bytes", "dtype": "<u1", "shape": [{SMALL_PNG.size}]}}]'
    body = ("{" + fields + ", " + arrays + "}").encode()
    return P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.Generate.KIND, request_id, len(body),
                         SMALL_PNG.size) + body + SMALL_PNG.tobytes()


def _answer(backend: BackendProcess, request_id: int) -> P.Error | None:
    """The request's outcome (an Error, or None after Done); then a Ping must still be answered."""
    out = backend.collect(request_id, timeout=120)
    backend.send(P.Ping(), 99_999)
    pong, rid = backend.expect(P.Pong)
    assert rid == 99_999
    return out["error"]


@pytest.mark.parametrize("name", ["resolution", "depth", "normals"])
@pytest.mark.parametrize("literal", LITERALS, ids=lambda s: s[:12])
def test_literal_json_values_are_bad_input(backend, name, literal):
    backend.send_raw(_raw_generate(f'"params": {{"{name}": {literal}}}', 41))
    error = _answer(backend, 41)
    assert error is not None and error.code == "bad_input", error
    assert name in error.message and error.hint and "Traceback" not in error.message + error.traceback


WRONG_FIELDS = {
    "params_list": '"params": [1]', "params_number": '"params": 7', "params_null": '"params": null',
    "params_string": '"params": "x"', "seed_string": '"seed": "1"', "seed_float": '"seed": 1.5',
    "seed_negative": '"seed": -1', "seed_huge": '"seed": ' + "9" * 30, "seed_bool": '"seed": true',
    "seed_nan": '"seed": NaN', "engine_number": '"engine": 5', "engine_list": '"engine": ["relief"]',
    "image_path_number": '"image_path": 7', "image_path_nul": '"image_path": "/tmp/a\\u0000b.png"',
    "image_name_object": '"image_name": {}', "device_number": '"device": 3', "device_unknown": '"device": "gpu9"',
    "want_normal_map_string": '"want_normal_map": "yes"', "want_normal_map_number": '"want_normal_map": 1',
    "mask_path_list": '"mask_path": []', "normal_path_nul": '"normal_path": "\\u0000"',
}
ODD_BUT_FINE = {"engine_huge": ('"engine": "' + "e" * 100_000 + '"', "unknown_engine"),
                "image_name_huge": ('"image_name": "' + "n" * 100_000 + '"', None)}


def _send_fields(backend: BackendProcess, fields: str, request_id: int, with_image: bool = True) -> None:
    if with_image:
        backend.send_raw(_raw_generate(fields, request_id))
        return
    body = ("{" + fields + ', "arrays": []}').encode()  # no image bytes: the path is what the backend reads
    backend.send_raw(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.Generate.KIND, request_id, len(body), 0) + body)


@pytest.mark.parametrize("case", sorted(WRONG_FIELDS))
def test_request_fields_of_the_wrong_type_are_bad_input(backend, case):
    _send_fields(backend, WRONG_FIELDS[case], 42, with_image=case != "image_path_nul")
    error = _answer(backend, 42)
    assert error is not None and error.code == "bad_input", error
    assert error.hint and len(error.message) < 400 and not error.traceback


@pytest.mark.parametrize("case", sorted(ODD_BUT_FINE))
def test_huge_names_are_cut_short(backend, case):
    fields, code = ODD_BUT_FINE[case]
    _send_fields(backend, fields, 45)
    error = _answer(backend, 45)
    assert (error.code if error else None) == code
    assert error is None or len(error.message) < 400


def test_integral_float_for_an_int_parameter_works(backend):
    backend.send(P.Generate(params={"resolution": 32.0}, image_bytes=SMALL_PNG), 43)
    assert _answer(backend, 43) is None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(RELIEF_NAMES) | st.text(max_size=12), json_values, max_size=4))
def test_any_generate_params_give_a_result_or_bad_input(backend, params):
    try:
        frame = P.encode_bytes(P.Generate(params=params, image_bytes=SMALL_PNG), 44)
    except (P.ProtocolError, ValueError):  # too large for a frame, or an int json cannot write
        return
    backend.send_raw(frame)
    error = _answer(backend, 44)
    assert error is None or error.code in ("bad_input", "weights_missing"), (params, error)
    if error is None:  # accepted: exactly what the in-process check accepts
        validate_params(ReliefEngine.params, params)
