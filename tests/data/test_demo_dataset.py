"""Reading a config that names the demo data writes nothing; the data appears when it is used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds

ROOT = Path(__file__).resolve().parents[2]


def test_setup_cfg_has_no_side_effects_and_the_loader_generates(tmp_path):
    code = textwrap.dedent(f"""
        import os
        from resnext_det import get_config_file
        from resnext_det.engine import setup_cfg
        from detectron2.data import DatasetCatalog, MetadataCatalog
        cfg = setup_cfg(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
        assert cfg.DATASETS.TEST == ("resnext_demo_val",), cfg.DATASETS.TEST
        assert os.listdir({str(tmp_path)!r}) == [], os.listdir({str(tmp_path)!r})
        assert MetadataCatalog.get("resnext_demo_val").thing_classes == ["square", "disc", "triangle"]
        records = DatasetCatalog.get("resnext_demo_val")
        assert len(records) == 40 and all(os.path.isfile(r["file_name"]) for r in records)
        print("ok")
    """)
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout[-2000:] + run.stderr[-2000:]
    assert len(list((tmp_path / "resnext_demo" / "val").glob("*.png"))) == 40
