#!/usr/bin/env python
"""docs/data_flow.png: what each tool reads and writes, from ImageNet to deployed detections.

  python scripts/data_flow.py            # rewrites docs/data_flow.png (docs/design.md shows it)

Tools are blue boxes, files and folders grey ones; an arrow is "is read by" / "writes". The
boxes are laid out by hand on a grid: the picture is the pipeline of appendix B, which does not
change with the code's details.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: name -> (column, row, label, is a tool)
NODES = {
    "imagenet": (0, 0, "ImageNet folder\ntrain/<wnid>/*.JPEG", False),
    "pretrain": (1, 0, "pretrain_imagenet.py\n(Sec. 4 recipe)", True),
    "classifier": (2, 0, "classifier\nmodel_final.pth", False),
    "convert": (3, 0, "convert_weights.py\n(or torchvision / timm)", True),
    "weights": (4, 0, "detectron2 weights\nx50_d2.pth", False),
    "coco": (0, 1, "COCO json + images\n(or --dataset / --voc-dataset)", False),
    "rpn": (1, 1, "train_rpn.py\nstage 1: the RPN alone", True),
    "proposals": (2, 1, "proposals_<dataset>/\nstore, AR@100", False),
    "frcn": (3, 1, "train_fast_rcnn.py\nstage 2: no feature sharing", True),
    "detector": (4, 1, "Fast R-CNN\nmodel_final.pth", False),
    "eval": (1, 2, "eval_coco.py\nAP / AP50, --analysis", True),
    "analysis": (0, 2, "coco_eval.json, PR curves,\nerror breakdown, confusion", False),
    "export": (3, 2, "export_model.py\nboth stages as one graph", True),
    "exported": (4, 2, "model.onnx / .pt2\n+ meta.json", False),
    "predict": (4, 3, "predict.py\nimages, folders, videos", True),
    "browse": (2, 2, "browse_dataset.py /\nplot_metrics.py", True),
}
EDGES = [
    ("imagenet", "pretrain"), ("pretrain", "classifier"), ("classifier", "convert"), ("convert", "weights"),
    ("coco", "rpn"), ("weights", "rpn"), ("rpn", "proposals"), ("proposals", "frcn"), ("weights", "frcn"),
    ("coco", "frcn"), ("frcn", "detector"), ("detector", "eval"), ("proposals", "eval"), ("eval", "analysis"),
    ("detector", "export"), ("proposals", "browse"), ("export", "exported"), ("exported", "predict"),
    ("exported", "eval"),
]  # fmt: skip
BOX_W, BOX_H, DX, DY = 2.3, 0.9, 3.0, 1.6


def _edge_ends(a, b):
    """From box edge to box edge: sideways within a row (an arc below the boxes it skips),
    else from the bottom (or top) of one to the top (or bottom) of the other."""
    (xa, ya), (xb, yb) = a, b
    if ya == yb:
        sign = 1 if xb > xa else -1
        skips = abs(xb - xa) > DX * 1.5
        start, end = (xa + sign * BOX_W / 2, ya), (xb - sign * BOX_W / 2, yb)
        if skips:  # leave and enter from below, under the boxes between
            start, end = (xa + sign * BOX_W / 4, ya - BOX_H / 2), (xb - sign * BOX_W / 4, yb - BOX_H / 2)
        return start, end, (0.25 * sign if skips else 0.0)
    down = yb < ya
    start = (xa + (0.25 if xb > xa else -0.25 if xb < xa else 0), ya - BOX_H / 2 if down else ya + BOX_H / 2)
    end = (xb, yb + BOX_H / 2 if down else yb - BOX_H / 2)
    return start, end, 0.0


def draw(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(15, 7.5))
    centre = {name: (col * DX, -row * DY) for name, (col, row, _, _) in NODES.items()}
    for name, (_, _, label, tool) in NODES.items():
        x, y = centre[name]
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.05",
                facecolor="#cfe2f3" if tool else "#eeeeee", edgecolor="#3d85c6" if tool else "#999999",
            )
        )  # fmt: skip
        ax.text(x, y, label, ha="center", va="center", fontsize=9, family="monospace" if tool else None)
    for a, b in EDGES:
        start, end, bend = _edge_ends(centre[a], centre[b])
        ax.add_patch(
            FancyArrowPatch(
                start, end, arrowstyle="-|>", mutation_scale=14, color="#555555",
                connectionstyle=f"arc3,rad={bend}",
            )
        )  # fmt: skip
    ax.set_xlim(-BOX_W, 4 * DX + BOX_W)
    ax.set_ylim(-3 * DY - BOX_H / 2 - 0.2, BOX_H)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("resnext-det: tools (blue) and what they read and write (grey), appendix B's pipeline")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "data_flow.png"), help="the PNG to write")
    args = parser.parse_args(argv)
    print(f"wrote {draw(Path(args.output))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
