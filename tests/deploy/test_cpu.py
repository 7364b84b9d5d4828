"""The int8 speed warnings (resnext_det.deploy.cpu, quantize, runtime): on a CPU without VNNI or
AMX, where ONNX Runtime's int8 can be slower than fp32, the export and the predictor say so with
what was measured. The CPU is described by a dict here: this machine's own has VNNI."""

from __future__ import annotations

import logging

import resnext_det.deploy.runtime as runtime
from resnext_det.deploy.cpu import cpu_description, cpu_features, has_int8_dot_product
from resnext_det.deploy.quantize import _speed_warning

AVX2_ONLY = {"model": "Some Xeon", "flags": ["avx2"], "torch_capability": "AVX2", "cores": 4}
VNNI = {**AVX2_ONLY, "flags": ["avx2", "avx512f", "avx512_vnni"]}


def check(int8_seconds: float, fp32_seconds: float = 1.0) -> dict:
    return {
        "images": 40,
        "fp32": {"seconds_per_image": fp32_seconds},
        "int8": {"seconds_per_image": int8_seconds},
        "int8_time_ratio": int8_seconds / fp32_seconds,
        "cpu": AVX2_ONLY,
    }


def test_this_cpu_is_described_from_its_flags():
    features = cpu_features()
    assert set(features) == {"model", "flags", "torch_capability", "cores"} and features["cores"] >= 1
    assert has_int8_dot_product(VNNI) and not has_int8_dot_product(AVX2_ONLY)
    assert cpu_description(AVX2_ONLY) == "Some Xeon (avx2), 4 cores"


def test_an_int8_model_slower_than_fp32_is_a_warning_that_names_the_cpu_and_the_times():
    assert _speed_warning(check(0.4), AVX2_ONLY) is None  # faster: nothing to say
    warning = _speed_warning(check(1.25), AVX2_ONLY)
    assert "int8 is slower than fp32 on this CPU (Some Xeon (avx2), 4 cores)" in warning
    assert "1.250 s vs 1.000 s per image (median over the 40 calibration images, 1.25x)" in warning
    assert "this CPU has no VNNI or AMX" in warning and "Deploy the fp32 export on this CPU" in warning
    assert "no VNNI" not in _speed_warning(check(1.25), VNNI)  # slower for another reason


def test_loading_an_int8_model_on_a_cpu_without_vnni_warns_with_what_the_export_measured(
    monkeypatch, caplog, tmp_path
):
    meta = {"quantization": {"dtype": "int8", "check": check(0.5)}}
    monkeypatch.setattr(
        runtime, "cpu_description", lambda features=None: cpu_description(features or AVX2_ONLY)
    )
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        monkeypatch.setattr(runtime, "has_int8_dot_product", lambda features=None: True)
        runtime._warn_if_int8_is_slow_here(tmp_path, meta)
        assert not caplog.records  # a VNNI CPU: int8 is the fast choice
        monkeypatch.setattr(runtime, "has_int8_dot_product", lambda features=None: False)
        runtime._warn_if_int8_is_slow_here(tmp_path, {"quantization": None})
        assert not caplog.records  # an fp32 model
        runtime._warn_if_int8_is_slow_here(tmp_path, meta)
    (record,) = caplog.records
    assert (
        f"{tmp_path} is an int8 model and this CPU (Some Xeon (avx2), 4 cores) has no VNNI or AMX"
        in record.message
    )
    assert "the export measured 0.50x fp32's time per image on Some Xeon (avx2), 4 cores" in record.message
