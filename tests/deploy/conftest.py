"""The tiny random-weight pair (tests/conftest.py's ``tiny_stage_dirs``) exported once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def onnx_dir(tiny_stage_dirs, lazy_fast_rcnn_dir, tmp_path_factory):
    """The tiny pair exported to ONNX (about 10 s), its stage 2 read from a LazyConfig run's
    folder: what the tests compare it with (the YAML pair's graph and predictor) then also shows
    that the exporter reads a LazyConfig stage as its YAML twin (the same weights)."""
    from resnext_det.deploy import export_stage_pair

    output = tmp_path_factory.mktemp("export") / "onnx"
    return export_stage_pair(tiny_stage_dirs[0], lazy_fast_rcnn_dir, output, "onnx")
