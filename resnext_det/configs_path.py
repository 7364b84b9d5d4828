"""Find the shipped YAML configs, in a checkout or in an installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["get_config_file"]


def get_config_file(relative_path: str) -> str:
    """Absolute path of a shipped config, e.g. ``"COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml"``.

    Looks in the repository's ``configs/`` (a checkout or an editable install) and then in the
    copy installed as ``resnext_det.configs``.
    """
    candidates = [Path(__file__).resolve().parents[1] / "configs" / relative_path]
    try:
        candidates.append(Path(str(resources.files("resnext_det.configs").joinpath(relative_path))))
    except ModuleNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"no shipped config {relative_path!r}; looked in: {', '.join(map(str, candidates))}"
    )
