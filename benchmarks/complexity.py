#!/usr/bin/env python
"""The complexity of every network of the paper's study, from its config, beside the paper's.

  python benchmarks/complexity.py      # about a minute on 2 cores; writes benchmarks/results/complexity.*

Parameters are counted on the built classifier; FLOPs are fvcore's multiply-adds of one forward
pass (one multiply-add = one FLOP, the paper's convention) at 224x224 (ImageNet) or 32x32
(CIFAR). docs/experiments.md and the README include ``complexity.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnext_det  # noqa: E402,F401
from pretrain.cifar import cifar_template_from_cfg, get_cifar_cfg  # noqa: E402
from pretrain.config import get_pretrain_cfg  # noqa: E402
from resnext_det.config import resnext_template_from_cfg  # noqa: E402
from resnext_det.modeling import count_flops, count_params, resnext, resnext_cifar  # noqa: E402

#: config (under configs/) -> (table, the paper's top-1 / test error in %, or None)
STUDY = {
    "ImageNet/ablations/R50_1x64d.yaml": ("Table 3", 23.9),
    "ImageNet/ablations/R50_2x40d.yaml": ("Table 3", 23.0),
    "ImageNet/ablations/R50_4x24d.yaml": ("Table 3", 22.6),
    "ImageNet/ablations/R50_8x14d.yaml": ("Table 3", 22.3),
    "ImageNet/ablations/R50_32x4d.yaml": ("Table 3", 22.2),
    "ImageNet/ablations/R101_1x64d.yaml": ("Table 3", 22.0),
    "ImageNet/ablations/R101_2x40d.yaml": ("Table 3", 21.7),
    "ImageNet/ablations/R101_4x24d.yaml": ("Table 3", 21.4),
    "ImageNet/ablations/R101_8x14d.yaml": ("Table 3", 21.3),
    "ImageNet/ablations/R101_32x4d.yaml": ("Table 3", 21.2),
    "ImageNet/R200.yaml": ("Table 4", 21.7),
    "ImageNet/R101_1x100d.yaml": ("Table 4", 21.3),
    "ImageNet/X101_2x64d.yaml": ("Table 4", 20.7),
    "ImageNet/X101_64x4d.yaml": ("Table 4", 20.4),
    "ImageNet/ablations/R50_no_shortcuts.yaml": ("Sec. 5.1", 31.2),
    "ImageNet/ablations/X50_32x4d_no_shortcuts.yaml": ("Sec. 5.1", 26.1),
    "ImageNet/5K/R50.yaml": ("Table 6", None),
    "ImageNet/5K/X50_32x4d.yaml": ("Table 6", None),
    "ImageNet/5K/R101.yaml": ("Table 6", None),
    "ImageNet/5K/X101_32x4d.yaml": ("Table 6", None),
    "CIFAR/ResNeXt29_8x64d_cifar10.yaml": ("Table 7", 3.65),
    "CIFAR/ResNeXt29_16x64d_cifar10.yaml": ("Table 7", 3.58),
    "CIFAR/ResNeXt29_8x64d_cifar100.yaml": ("Table 7", 17.77),
    "CIFAR/ResNeXt29_16x64d_cifar100.yaml": ("Table 7", 17.31),
}


@functools.cache  # the test suite reads each network's count from several tests: counted once
def measure(relative: str) -> dict:
    cifar = relative.startswith("CIFAR/")
    cfg = get_cifar_cfg() if cifar else get_pretrain_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / relative))
    # Built on the meta device, then given zeroed storage: the counts do not depend on the weights'
    # values, and the random initialisation was most of the time (7.7 of 13 s for the study).
    with torch.device("meta"):
        network, template_from_cfg, size = (resnext, resnext_template_from_cfg, 224)
        if cifar:
            network, template_from_cfg, size = (resnext_cifar, cifar_template_from_cfg, 32)
        model = network(num_classes=cfg.MODEL.NUM_CLASSES, **template_from_cfg(cfg).asdict())
    model = model.to_empty(device="cpu")
    for tensor in (*model.parameters(), *model.buffers()):
        tensor.detach().zero_()
    r = cfg.MODEL.RESNEXT
    return {
        "depth": r.DEPTH,
        "template": f"{r.CARDINALITY}x{r.BOTTLENECK_WIDTH}d",
        "shortcuts": r.SHORTCUTS,
        "classes": cfg.MODEL.NUM_CLASSES,
        "params_M": round(count_params(model) / 1e6, 2),
        "GFLOPs": round(count_flops(model, (size, size)) / 1e9, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results"), help="folder for complexity.*"
    )
    args = parser.parse_args(argv)
    rows = []
    for relative, (table, paper_error) in STUDY.items():
        row = {
            "config": f"configs/{relative}",
            "table": table,
            **measure(relative),
            "paper_error": paper_error,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| table | config | depth | template | shortcuts | classes | params (M) | GFLOPs "
        "| paper's error (%) |",
        "|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        error = "" if r["paper_error"] is None else f"{r['paper_error']}"
        lines.append(
            f"| {r['table']} | `{r['config']}` | {r['depth']} | {r['template']} | {r['shortcuts']} | "
            f"{r['classes']} | {r['params_M']:.1f} | {r['GFLOPs']:.2f} | {error} |"
        )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "complexity.md").write_text("\n".join(lines) + "\n")
    (output / "complexity.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {output / 'complexity.md'} and complexity.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
