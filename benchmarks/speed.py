#!/usr/bin/env python
"""Speed side by side: this project's ResNeXt vs detectron2's built-in ResNeXt vs ResNet-50.

  python benchmarks/speed.py                 # docs/speed.md's table, about 5-13 minutes on 2 cores
  python benchmarks/speed.py --quick         # tiny sizes, one repetition: checks the script runs
  python benchmarks/speed.py --only deploy   # exported-model rows only, about 5 minutes
  python benchmarks/speed.py --device cuda --only detectors,memory   # some groups, on a GPU

One process, threads fixed (``--threads``), every group of models timed interleaved (A B C A B C
...) after a warm-up round, ``--reps`` repetitions. Each row gives the median time and its ratio to
the group's reference: the median of the per-repetition ratios (A over B timed side by side in
the same round), with their range, which is steadier on a shared machine than a ratio of medians.

1. backbone (stem..res4, the C4 trunk) forward+backward at a detection size: ours X50 (32x4d),
   detectron2's ``build_resnet_backbone`` with the same template (``NUM_GROUPS 32,
   WIDTH_PER_GROUP 4, STRIDE_IN_1X1 False``), ours R50 (1x64d); FrozenBN, stem and res2 frozen,
   as the paper fine-tunes;
2. the full C4 Faster R-CNN: one training iteration (synthetic boxes) and inference, the same three
   plus ours X50 in channels_last; at inference the RPN's NMS is off and its box deltas are zero
   (proposals = anchors), so that every model's res5 head runs on exactly ``--test-proposals``
   RoIs (random weights otherwise leave each model another number); the RoI counts are recorded
   by a hook, and unequal counts stop the benchmark;
3. classification at 224x224, ours X50 vs ours R50: training step and inference in fp32, fp32
   channels_last, and bf16 autocast + channels_last;
4. the block forms of Fig. 3, (a) aggregated, (b) concatenated, (c) grouped, at conv2 and conv4
   sizes, forward+backward;
5. deploy (``--only deploy``, ``benchmarks/deploy_speed.py``): the two-stage detector from image
   to detections by backend (detectron2 eager, ours eager, ``.pt2``, ONNX Runtime) on the same
   image and RoI count, and classification inference the same way;
6. achieved multiply-adds per second: fvcore's count of the forward (x3 for forward+backward,
   the usual estimate) over the time, and that as a fraction of this machine's ceiling, its best
   fp32 1x1 convolution in channels_last (``timing.conv1x1_ceiling``; a ``torch.mm`` is not
   what the convolutions can reach);
7. peak memory of one training iteration: in a fresh process per model, the peak RSS while it
   builds the model and runs one iteration, above its RSS after the imports (on a GPU:
   ``torch.cuda.max_memory_allocated``).

``--device cuda`` runs every group on the GPU: each timed call ends with
``torch.cuda.synchronize()`` (kernels are asynchronous, so a timer alone measures the launch), bf16
autocast runs on the GPU, and the matmul peak is the GPU's.

Writes ``speed.md`` (docs/speed.md includes it), ``speed.json`` and ``speed_ratios.png`` to ``--output``;
with ``--only``, ``speed_<groups>.*`` (e.g. ``speed_deploy.md``), so the full table is kept.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from contextlib import nullcontext
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # timing.py, deploy_speed.py beside this file

import resnext_det  # noqa: E402,F401  (prepares detectron2; must come first)
from resnext_det import get_config_file, resnet50, resnext50_32x4d  # noqa: E402
from resnext_det.config import add_resnext_config  # noqa: E402
from resnext_det.deploy.cpu import cpu_features  # noqa: E402
from resnext_det.layers.frozen_bn import fold_frozen_batchnorm  # noqa: E402
from resnext_det.modeling.block import block_class  # noqa: E402

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import build_backbone, build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from timing import conv1x1_ceiling, forward_macs, interleaved, matmul_peak, row, synchronize  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads (default: torch's own, OMP_NUM_THREADS or the cores)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a GPU: times are synchronised)")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups to run, of {','.join(GROUPS)} (default: all)",
    )
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per model (median kept)")
    parser.add_argument(
        "--bf16-reps",
        type=int,
        default=2,
        help="repetitions of the bf16 rows (slow where the CPU lacks bf16)",
    )
    parser.add_argument("--det-size", type=int, nargs=2, default=(320, 416), metavar=("H", "W"))
    parser.add_argument("--det-images", type=int, default=2)
    parser.add_argument("--rois", type=int, default=32, help="RoIs per image in a training iteration")
    parser.add_argument("--test-proposals", type=int, default=100, help="proposals per image at inference")
    parser.add_argument("--cls-batch", type=int, default=8)
    parser.add_argument("--cls-size", type=int, default=224, help="classification image side")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 repetition (a smoke test)")
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args(argv)
    args.only = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = sorted(set(args.only) - set(GROUPS))
    if unknown:
        parser.error(f"--only: unknown group(s) {', '.join(unknown)}; the groups are {', '.join(GROUPS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this machine has no usable GPU; use --device cpu")
    if args.quick:
        args.reps, args.bf16_reps, args.det_size, args.det_images = 1, 1, (64, 96), 1
        args.rois, args.test_proposals, args.cls_batch, args.cls_size = 8, 20, 2, 64
    return args


# ------------------------------------------------------------------------------ models
def detection_cfg(variant: str, args):
    """ours_x50 / d2_x50 / ours_r50: the paper's C4 Faster R-CNN (FrozenBN, FREEZE_AT 2) on CPU.
    ``ours_x50_cl`` is ours_x50 (the memory format is set on the built model)."""
    cfg = get_cfg()
    add_resnext_config(cfg)
    name = "faster_rcnn_R50_C4.yaml" if variant == "ours_r50" else "faster_rcnn_X50_32x4d_C4.yaml"
    cfg.merge_from_file(get_config_file(f"COCO-Detection/{name}"))
    cfg.MODEL.DEVICE = args.device
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = args.rois
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = args.test_proposals
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 10 * args.test_proposals
    # No RPN NMS at test time (and see ``proposals_are_anchors``): with random weights NMS keeps a
    # different number of proposals per model, and the res5 head's cost is proportional to it.
    cfg.MODEL.RPN.NMS_THRESH_TEST = 1.0
    if variant == "d2_x50":  # detectron2's own ResNeXt with the same template
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        cfg.MODEL.BACKBONE.FREEZE_AT = 2
        cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
        r = cfg.MODEL.RESNETS
        r.DEPTH, r.NUM_GROUPS, r.WIDTH_PER_GROUP, r.STRIDE_IN_1X1 = 50, 32, 4, False
        r.NORM, r.OUT_FEATURES, r.RES2_OUT_CHANNELS = "FrozenBN", ["res4"], 256
    return cfg


DETECTORS = {
    "ours_x50": "ours X50 (32x4d)",
    "d2_x50": "detectron2 X50 (32x4d)",
    "ours_r50": "ours R50 (1x64d)",
}
CHANNELS_LAST_DETECTOR = {"ours_x50_cl": "ours X50 (32x4d), channels_last"}


def detection_batch(args, num_classes: int = 80):
    height, width = args.det_size
    generator = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(args.det_images):
        xy = torch.rand(6, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
        wh = torch.rand(6, 2, generator=generator) * torch.tensor([width * 0.35, height * 0.35]) + 16
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        instances.gt_classes = torch.randint(num_classes, (6,), generator=generator)
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8).float()
        batch.append({"image": image, "height": height, "width": width, "instances": instances})
    return batch


def proposals_are_anchors(model) -> None:
    """Zero the RPN's box deltas, so that the proposals are anchors: random deltas make many boxes
    empty after clipping, which are dropped, and each model's res5 head would then run on another
    number of RoIs (83 for one model, 100 for another were seen)."""
    torch.nn.init.zeros_(model.proposal_generator.rpn_head.anchor_deltas.weight)
    torch.nn.init.zeros_(model.proposal_generator.rpn_head.anchor_deltas.bias)


def res5_batch_sizes(model) -> list[int]:
    """The number of RoIs the res5 head runs on, one entry per call (filled as the model runs)."""
    seen: list[int] = []
    model.roi_heads.res5.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape[0]))
    return seen


def same_count(counts: dict[str, list[int]], what: str) -> int:
    """The one RoI count every model saw; a benchmark comparing unequal work is refused."""
    distinct = {variant: sorted(set(seen)) for variant, seen in counts.items()}
    if len({tuple(d) for d in distinct.values()}) != 1 or len(next(iter(distinct.values()))) != 1:
        raise RuntimeError(f"the models' res5 heads ran on different numbers of RoIs in {what}: {distinct}")
    return next(iter(distinct.values()))[0]


def train_step(model, optimizer, inputs):
    optimizer.zero_grad(set_to_none=True)
    with EventStorage(0):  # detectron2's heads log into the trainer's storage
        losses = model(inputs)
    sum(losses.values()).backward()
    optimizer.step()


def sgd(model):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)


# ------------------------------------------------------------------------------ benchmarks
def bench_backbones(args, rows, peak):
    height, width = args.det_size
    images = torch.randn(args.det_images, 3, height, width, device=args.device)
    cases, macs = {}, {}
    for variant in DETECTORS:
        cfg = detection_cfg(variant, args)
        backbone = build_backbone(cfg, ShapeSpec(channels=3)).train().to(args.device)
        macs[variant] = forward_macs(backbone, (images,))

        def step(backbone=backbone):
            backbone(images)["res4"].sum().backward()

        cases[variant] = step
    times = interleaved(cases, args.reps, args.device)
    for variant, label in DETECTORS.items():
        size = f"{args.det_images}x{height}x{width}"
        rows.append(row("1. C4 backbone, forward+backward", label, times[variant], times["d2_x50"],
                        args.det_images, 3 * macs[variant], peak, size))  # fmt: skip


def bench_detectors(args, rows, peak):
    batch = detection_batch(args)
    test_inputs = [{k: v for k, v in batch[0].items() if k != "instances"}]
    train_cases, infer_cases, train_rois, infer_rois = {}, {}, {}, {}
    for variant in [*DETECTORS, *CHANNELS_LAST_DETECTOR]:
        cfg = detection_cfg(variant, args)
        memory_format = torch.channels_last if variant.endswith("_cl") else torch.contiguous_format
        model = build_model(cfg).train().to(memory_format=memory_format)
        train_rois[variant] = res5_batch_sizes(model)
        optimizer = sgd(model)
        train_cases[variant] = lambda model=model, optimizer=optimizer: train_step(model, optimizer, batch)
        inference = build_model(cfg).eval().to(memory_format=memory_format)
        proposals_are_anchors(inference)
        infer_rois[variant] = res5_batch_sizes(inference)
        if variant.startswith("ours"):
            fold_frozen_batchnorm(inference)  # the tools' inference path (TEST.FOLD_FROZEN_BN)

        def infer(inference=inference):
            with torch.no_grad():
                inference(test_inputs)

        infer_cases[variant] = infer
    train = interleaved(train_cases, args.reps, args.device)
    infer = interleaved(infer_cases, args.reps, args.device)
    labels = {**DETECTORS, **CHANNELS_LAST_DETECTOR}
    rois = same_count(train_rois, "training")
    size = f"{args.det_images}x{args.det_size[0]}x{args.det_size[1]}, {rois // args.det_images} RoIs/image"
    for variant, label in labels.items():
        rows.append(row("2. C4 Faster R-CNN training iteration", label, train[variant], train["d2_x50"],
                        args.det_images, None, peak, size))  # fmt: skip
    test_size = f"1x{args.det_size[0]}x{args.det_size[1]}, {same_count(infer_rois, 'inference')} RoIs"
    for variant, label in labels.items():
        note = test_size + (", FrozenBN folded" if variant.startswith("ours") else "")
        rows.append(
            row("2. C4 Faster R-CNN inference", label, infer[variant], infer["d2_x50"], 1, None, peak, note)
        )


def bench_classification(args, rows, peak):
    side = args.cls_size
    images = torch.randn(args.cls_batch, 3, side, side, device=args.device)
    labels = torch.randint(1000, (args.cls_batch,), device=args.device)
    modes = {
        "fp32": (torch.contiguous_format, None, args.reps),
        "fp32 channels_last": (torch.channels_last, None, args.reps),
        "bf16 autocast + channels_last": (torch.channels_last, torch.bfloat16, args.bf16_reps),
    }
    size = f"{args.cls_batch}x{side}x{side}"
    for mode, (memory_format, dtype, reps) in modes.items():
        models = {"X50": resnext50_32x4d().to(args.device), "R50": resnet50().to(args.device)}
        macs = {name: forward_macs(m.eval(), (images,)) for name, m in models.items()}
        x = images.contiguous(memory_format=memory_format)
        train_cases, infer_cases = {}, {}
        for name, model in models.items():
            model = model.to(memory_format=memory_format)
            train_cases[name], infer_cases[name] = classification_steps(model, x, labels, dtype)
        train = interleaved(train_cases, reps, args.device)
        infer = interleaved(infer_cases, reps, args.device)
        ceiling = args.bf16_peak if dtype is torch.bfloat16 else peak
        for name in models:
            label = f"ours {name}, {mode}"
            rows.append(row("3. classification training step", label, train[name], train["R50"],
                            args.cls_batch, 3 * macs[name], ceiling, size))  # fmt: skip
            rows.append(row("3. classification inference", label, infer[name], infer["R50"],
                            args.cls_batch, macs[name], ceiling, size))  # fmt: skip


def classification_steps(model, images, labels, dtype):
    """(training step, inference) closures for one classifier, input and autocast dtype."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    device_type = images.device.type

    def cast():
        return torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext()

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with cast():
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    def infer():
        model.eval()
        with torch.no_grad(), cast():
            model(images)

    return step, infer


def bench_block_forms(args, rows, peak):
    sizes = {"conv2": (256, 128, 56), "conv4": (1024, 512, 14)}  # channels, grouped width, spatial
    if args.quick:
        sizes = {"conv2": (256, 128, 14), "conv4": (1024, 512, 7)}
    for stage, (channels, width, spatial) in sizes.items():
        x = torch.randn(args.cls_batch, channels, spatial, spatial, device=args.device)
        blocks = {
            form: block_class(form)(channels, channels, bottleneck_channels=width, cardinality=32).to(
                args.device
            )
            for form in ("aggregated", "concat", "grouped")
        }
        macs = {form: forward_macs(b.eval(), (x,)) for form, b in blocks.items()}
        cases = {form: forward_backward(block.train(), x) for form, block in blocks.items()}
        times = interleaved(cases, args.reps, args.device)
        for form, label in (
            ("aggregated", "(a) aggregated"),
            ("concat", "(b) concatenated"),
            ("grouped", "(c) grouped"),
        ):
            size = f"{args.cls_batch}x{channels}x{spatial}x{spatial}, 32x{width // 32}d"
            rows.append(row(f"4. Fig. 3 block forms at {stage}, forward+backward", label, times[form],
                            times["grouped"], args.cls_batch, 3 * macs[form], peak, size))  # fmt: skip


def forward_backward(module, x):
    return lambda: module(x).sum().backward()


# ------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_child(variant: str, args, result) -> None:
    """In a process forked from the imports alone (``peak_memory``): reset the peak-RSS mark
    (``clear_refs`` 5), build the model, run one training iteration, and send the peak RSS above
    the RSS at the fork (KiB) through ``result`` (a pipe's end). On a GPU: the peak of
    ``torch.cuda.max_memory_allocated`` over the same work (KiB)."""
    torch.set_num_threads(args.threads)
    on_gpu = torch.device(args.device).type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(args.device)
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
    model = build_model(detection_cfg(variant, args)).train()
    train_step(model, sgd(model), detection_batch(args))
    if on_gpu:
        synchronize(args.device)
        result.send(torch.cuda.max_memory_allocated(args.device) // 1024)
    else:
        result.send(_status_kib("VmHWM") - before)


def peak_memory(args) -> dict[str, float]:
    """MiB of one C4 training iteration (weights, gradients, momentum, activations) per detector,
    each in its own process, so that one model's peak does not hide another's. The processes fork
    from a server that has imported this script and nothing else (multiprocessing's forkserver):
    the imports' own transient peak stays out of the measurement, and they are paid once (a fresh
    interpreter per detector paid them three times: 3-4 s each on 2 cores)."""
    context = multiprocessing.get_context("forkserver")
    peaks = {}
    for variant in DETECTORS:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=rss_child, args=(variant, args, send))
        child.start()
        send.close()
        try:
            kib = receive.recv()
        except EOFError:
            kib = None
        child.join()
        if child.exitcode != 0 or kib is None:
            raise RuntimeError(
                f"the peak-memory process of {variant} failed (exit {child.exitcode}); its output is above"
            )
        peaks[variant] = kib / 1024
    return peaks


# ------------------------------------------------------------------------------ output
def markdown(result: dict) -> str:
    env = result["environment"]
    native_bf16 = "native bf16" if env["native_bf16"] else "no native bf16 (emulated: slow)"
    gpu = f"GPU {env['gpu']}, " if env.get("gpu") else ""
    lines = [
        f"{env['date']}, torch {env['torch']}, {gpu}{env['threads']} threads on {env['cores']} cores "
        f"({env['cpu']}, {env['cpu_capability']}, {native_bf16}; {', '.join(env.get('cpu_flags', []))}); "
        '"of peak" is of the best fp32 1x1 '
        f"convolution in channels_last, {env['peak_gmac_per_s']:.1f} GMAC/s (bf16 rows: the bf16 one, "
        f"{env['bf16_peak_gmac_per_s']:.1f}; a 2048³ fp32 matmul: {env['matmul_gmac_per_s']:.1f}). "
        f"{env['reps']} interleaved repetitions after a warm-up "
        f"({env['bf16_reps']} for bf16): median seconds; ratio = median over the repetitions of the time "
        "over the group's (ref) row timed in the same repetition, with the lowest and highest in brackets.",
        "",
        "| measurement | model | input | s | images/s | ratio (range) | GMAC | GMAC/s | of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        reference = " (ref)" if r["reference"] else ""
        low, high = r["ratio_range"]
        ratio = "1.00" if r["reference"] else f"{r['ratio']:.2f} ({low:.2f}–{high:.2f})"
        cells = [
            r["group"], r["model"] + reference, r["size"], f"{r['seconds']:.3f}", f"{r['images_per_s']:.2f}",
            ratio,
            f"{r['gmacs']:.1f}" if r["gmacs"] else "",
            f"{r['gmac_per_s']:.1f}" if r["gmac_per_s"] else "",
            f"{100 * r['fraction_of_peak']:.0f}%" if r["fraction_of_peak"] else "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    profiled = [r for r in result["rows"] if r.get("profile")]
    if profiled:
        from deploy_profile import SECTIONS

        lines += [
            "",
            "Where the detector's time goes (benchmarks/deploy_profile.py: each backend's own per-node "
            "times, shared out over the median seconds above):",
            "",
            "| backend | s | " + " | ".join(SECTIONS) + " |",
            "|---|---:|" + "---:|" * len(SECTIONS),
        ]
        for r in profiled:
            cells = [f"{r['seconds'] * r['profile'][section]:.3f}" for section in SECTIONS]
            lines.append(f"| {r['model']} | {r['seconds']:.3f} | " + " | ".join(cells) + " |")
    if result["peak_memory_mib"]:
        measure = (
            "peak torch.cuda.max_memory_allocated"
            if env.get("gpu")
            else "peak RSS above the process's RSS after its imports"
        )
        lines += [
            "",
            f"Peak memory of building a C4 Faster R-CNN and running one training iteration ({measure}; "
            "a fresh process per model):",
            "",
        ]
        lines += ["| model | MiB |", "|---|---:|"]
        lines += [f"| {DETECTORS[v]} | {mib:.0f} |" for v, mib in result["peak_memory_mib"].items()]
    return "\n".join(lines) + "\n"


#: Okabe-Ito colours (colour-blind safe): faster than the group's reference, slower, the reference
CHART_COLOURS = {"faster": "#0072B2", "slower": "#E69F00", "reference": "#999999"}
#: the ratio axis: logarithmic, so that 0.2x and 6x fit beside the 0.6-1.2 range where the
#: decisions are, with these ticks
CHART_TICKS = (0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0)


def chart(result: dict, path: Path) -> None:
    """One panel per group: each row's time relative to its group's reference (grey), on a log
    axis, the value written at the bar's end, whiskers from the lowest to the highest ratio."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, NullLocator

    groups: dict[str, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault(r["group"], []).append(r)
    low = min(min(r["ratio_range"][0], r["ratio"]) for r in result["rows"])
    high = max(max(r["ratio_range"][1], r["ratio"]) for r in result["rows"])
    limits = (min(0.8, low / 1.3), max(1.25, high * 1.6))
    heights = [0.42 * len(rows) + 0.7 for rows in groups.values()]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(10, sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, (group, rows) in zip(axes[:, 0], groups.items(), strict=True):
        kinds = ["reference" if r["reference"] else "faster" if r["ratio"] <= 1.0 else "slower" for r in rows]
        ratios = [r["ratio"] for r in rows]
        spread = [
            [r["ratio"] - r["ratio_range"][0] for r in rows],
            [r["ratio_range"][1] - r["ratio"] for r in rows],
        ]
        # bars grow from 1 (the reference) to the ratio: left is faster, right slower
        axis.barh(range(len(rows)), [ratio - 1 for ratio in ratios], left=1, height=0.7,
                  color=[CHART_COLOURS[k] for k in kinds])  # fmt: skip
        axis.errorbar(ratios, range(len(rows)), xerr=spread, fmt="none", ecolor="black", elinewidth=0.8,
                      capsize=2)  # fmt: skip
        for y, r in enumerate(rows):
            if r["reference"]:
                axis.plot([1, 1], [y - 0.35, y + 0.35], color=CHART_COLOURS["reference"], linewidth=4)
            faster = r["ratio"] < 1
            end = r["ratio_range"][0] / 1.04 if faster else r["ratio_range"][1] * 1.04
            axis.text(end, y, f"{r['ratio']:.2f}", va="center", ha="right" if faster else "left", fontsize=8)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlim(*limits)
        axis.xaxis.set_major_locator(FixedLocator([t for t in CHART_TICKS if limits[0] <= t <= limits[1]]))
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xticklabels([f"{t:g}" for t in CHART_TICKS if limits[0] <= t <= limits[1]], fontsize=8)
        axis.set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=9)
        axis.invert_yaxis()
        axis.set_title(f"{group}  ({rows[0]['size']})", fontsize=10, loc="left")
        axis.grid(axis="x", linewidth=0.3)
    axes[-1, 0].set_xlabel(
        "time relative to the group's reference (log scale; below 1 is faster)", fontsize=9
    )
    env = result["environment"]
    where = env.get("gpu") or f"{env['threads']} CPU threads, {env.get('cpu', '')}"
    figure.suptitle(f"resnext-det speed, {env['date']}, {where}", fontsize=11)
    figure.legend(
        handles=[Patch(color=CHART_COLOURS[k], label=label) for k, label in (
            ("faster", "faster than the reference"), ("slower", "slower"), ("reference", "the reference"))],
        loc="lower center", fontsize=9, ncol=3, frameon=False,
    )  # fmt: skip
    figure.tight_layout(rect=(0, 0.025, 1, 0.98))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    on_gpu = torch.device(args.device).type == "cuda"
    matmul = matmul_peak(args.device, 512 if args.quick else 2048)
    ceiling = {"batch": 1 if args.quick else 8, "reps": 2 if args.quick else 5}
    peak = conv1x1_ceiling(args.device, **ceiling)
    args.bf16_peak = conv1x1_ceiling(args.device, **ceiling, dtype=torch.bfloat16)
    rows: list[dict] = []
    for group in args.only:
        if group == "memory":
            continue
        start = time.perf_counter()
        if group == "deploy":
            from deploy_speed import bench_deploy

            bench_deploy(args, rows, peak)
        else:
            GROUPS[group](args, rows, peak)
        print(f"{group}: {time.perf_counter() - start:.0f} s", flush=True)
    native_bf16 = torch.cuda.is_bf16_supported() if on_gpu else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    result = {
        "environment": {
            "date": date.today().isoformat(), "torch": torch.__version__, "threads": args.threads,
            "cores": __import__("os").cpu_count(), "cpu": cpu_features()["model"],
            "cpu_flags": cpu_features()["flags"],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": bool(native_bf16),
            "gpu": torch.cuda.get_device_name(args.device) if on_gpu else None,
            "peak_gmac_per_s": peak / 1e9, "bf16_peak_gmac_per_s": args.bf16_peak / 1e9,
            "matmul_gmac_per_s": matmul / 1e9,
            "reps": args.reps, "bf16_reps": args.bf16_reps,
            "quick": args.quick, "groups": args.only,
        },
        "rows": rows,
        "peak_memory_mib": peak_memory(args) if "memory" in args.only else {},
    }  # fmt: skip
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_" + torch.device(args.device).type if on_gpu else "")
    if set(args.only) != set(GROUPS):  # a few groups: beside the full table, never over it
        suffix += "_" + "-".join(args.only)
    (output / f"speed{suffix}.json").write_text(json.dumps(result, indent=1))
    (output / f"speed{suffix}.md").write_text(markdown(result))
    if rows:
        chart(result, output / f"speed_ratios{suffix}.png")
    print(markdown(result))
    return result


#: ``--only`` names, in the order they run (``memory``: the peak-memory table).
GROUPS = {
    "backbones": bench_backbones,
    "detectors": bench_detectors,
    "classification": bench_classification,
    "block_forms": bench_block_forms,
    "deploy": None,  # deploy_speed.bench_deploy, imported when run (it needs onnx and onnxruntime)
    "memory": None,
}

if __name__ == "__main__":
    main(parse_args())
