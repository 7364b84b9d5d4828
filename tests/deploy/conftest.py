"""The tiny random-weight pair (tests/conftest.py's ``tiny_stage_dirs``) exported once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def onnx_dir(tiny_stage_dirs, tmp_path_factory):
    """The tiny pair exported to ONNX (about 10 s)."""
    from resnext_det.deploy import export_stage_pair

    return export_stage_pair(*tiny_stage_dirs, tmp_path_factory.mktemp("export") / "onnx", "onnx")
