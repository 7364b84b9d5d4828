"""``benchmarks/speed.py --only deploy``: inference of the paper's two-stage detector (and of the
classifier) by backend, on the same image and the same RoI count.

Detection, image (uint8, BGR) to detections, the RPN + Fast R-CNN pair of appendix B (two trunks,
no feature sharing), random weights, X50 32x4d C4:

- detectron2 eager (ref): detectron2's own ResNeXt (``build_resnet_backbone`` with ``NUM_GROUPS
  32``, ``Res5ROIHeads``) in ``TwoStagePredictor``, FrozenBN as detectron2 runs it;
- ours eager: this project's models in ``TwoStagePredictor``, FrozenBN folded;
- ours ``TwoStageGraph`` eager, then exported: ``.pt2`` (torch.export + AOTInductor, freezing)
  and ONNX (``torch.onnx.export``, ONNX Runtime's CPU provider).

The RPN's box deltas are zeroed and its NMS is off (``MODEL.RPN.NMS_THRESH 1.0``), so the
proposals are the top anchors and every backend's res5 head runs on exactly ``--test-proposals``
RoIs; the image is at the test size (its resize is the identity).

Classification (224x224, a batch of ``--cls-batch``): torchvision's ``resnext50_32x4d`` eager
(ref), ours eager, ours ``torch.compile`` (inductor, freezing), ``.pt2`` and ONNX Runtime.
``--quick`` (the test suite's smoke test) leaves out the ``.pt2`` and compiled rows: they only add
compile time there (about 30 s for the detector), and the suite compiles one ``.pt2`` already,
the demo's, which it checks against PyTorch at any size.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from resnext_det import get_config_file, resnext50_32x4d
from resnext_det.deploy.export import AOTI_OPTIONS, trace_graph, write_onnx
from resnext_det.deploy.graph import TwoStageGraph
from resnext_det.deploy.runtime import _OnnxRuntime
from resnext_det.engine import setup_cfg
from resnext_det.engine.two_stage import TwoStagePredictor, build_trained_model

import numpy as np
import torch
from timing import forward_macs, interleaved, row

__all__ = ["bench_deploy"]

#: ours X50 in detectron2's own ResNet: the same template (stride in the 3x3, as the paper's).
DETECTRON2_RESNEXT = [
    "MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.FREEZE_AT", "2",
    "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.NUM_GROUPS", "32", "MODEL.RESNETS.WIDTH_PER_GROUP", "4",
    "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.RESNETS.NORM", "FrozenBN",
    "MODEL.RESNETS.OUT_FEATURES", "['res4']", "TEST.FOLD_FROZEN_BN", "False",
]  # fmt: skip


def stage_cfgs(args, detectron2: bool):
    height = args.det_size[0]
    k = args.test_proposals
    cfgs = []
    for stage in ("rpn", "fast_rcnn"):
        opts = ["MODEL.DEVICE", args.device, "INPUT.MIN_SIZE_TEST", str(height),
                "MODEL.RPN.NMS_THRESH", "1.0", "MODEL.RPN.PRE_NMS_TOPK_TEST", str(10 * k),
                "MODEL.RPN.POST_NMS_TOPK_TEST", str(k),
                "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", str(k)]  # fmt: skip
        if detectron2:
            opts += DETECTRON2_RESNEXT
            opts += ["MODEL.ROI_HEADS.NAME", "Res5ROIHeads"] if stage == "fast_rcnn" else []
        cfgs.append(setup_cfg(get_config_file(f"COCO-Detection/{stage}_X50_32x4d_C4.yaml"), opts))
    return cfgs


def proposals_are_anchors(rpn) -> None:
    torch.nn.init.zeros_(rpn.proposal_generator.rpn_head.anchor_deltas.weight)
    torch.nn.init.zeros_(rpn.proposal_generator.rpn_head.anchor_deltas.bias)


def count_rois(module: torch.nn.Module, seen: list[int]) -> None:
    module.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].shape[0]))


def bench_deploy(args, rows, peak):
    with tempfile.TemporaryDirectory() as tmp:
        _detection(args, rows, peak, Path(tmp))
        _classification(args, rows, peak, Path(tmp))


def _detection(args, rows, peak, tmp: Path):
    height, width = args.det_size
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).to(args.device)
    rois: dict[str, list[int]] = {}
    predictors = {}
    for name, detectron2 in (("d2", True), ("ours", False)):
        predictor = TwoStagePredictor(*stage_cfgs(args, detectron2))
        proposals_are_anchors(predictor.rpn)
        count_rois(predictor.fast_rcnn.roi_heads.res5, rois.setdefault(name, []))
        predictors[name] = predictor
    rpn_cfg, frcn_cfg = stage_cfgs(args, False)
    rpn = build_trained_model(rpn_cfg)
    proposals_are_anchors(rpn)
    graph = TwoStageGraph(rpn, build_trained_model(frcn_cfg), input_format="RGB", min_size=height,
                          max_size=1333, proposal_topk=args.test_proposals).to(args.device)  # fmt: skip
    count_rois(graph.res5, rois.setdefault("graph", []))
    onnx = _OnnxRuntime(write_onnx(graph, tensor, tmp / "detector.onnx"), args.device)
    cases = {
        "detectron2 X50 pair, eager": lambda: predictors["d2"](image),
        "ours X50 pair, eager (FrozenBN folded)": lambda: predictors["ours"](image),
        "ours TwoStageGraph, eager": lambda: graph(tensor),
    }
    if not args.quick:  # the test suite's one .pt2 compile is the demo's (tests/tools/test_demo.py)
        program = trace_graph(graph, tensor)
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp / "detector.pt2"), inductor_configs=AOTI_OPTIONS
        )
        compiled = torch._inductor.aoti_load_package(package)
        cases["ours .pt2 (torch.export + AOTInductor)"] = lambda: compiled(tensor)
    cases["ours ONNX Runtime (opset 18)"] = lambda: onnx(image)
    with torch.no_grad():
        times = interleaved(cases, args.reps, args.device)
    counts = {name: sorted(set(seen)) for name, seen in rois.items()}
    if len({tuple(c) for c in counts.values()}) != 1:
        raise RuntimeError(f"the backends ran their res5 heads on different numbers of RoIs: {counts}")
    reference = times["detectron2 X50 pair, eager"]
    size = f"1x{height}x{width} uint8, {args.test_proposals} RoIs"
    for label, seconds in times.items():
        rows.append(row("5. deploy: RPN + Fast R-CNN, image to detections", label, seconds, reference, 1,
                        None, peak, size))  # fmt: skip


def _classification(args, rows, peak, tmp: Path):
    import torchvision

    side, batch = args.cls_size, args.cls_batch
    images = torch.randn(batch, 3, side, side, device=args.device)
    reference = torchvision.models.resnext50_32x4d().eval().to(args.device)
    ours = resnext50_32x4d().eval().to(args.device)
    cases = {"torchvision X50, eager": lambda: reference(images), "ours X50, eager": lambda: ours(images)}
    if not args.quick:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            compiled = torch.compile(ours)
            with torch.no_grad():
                compiled(images)  # compiles here, with freezing on
        cases["ours X50, torch.compile (freezing)"] = lambda: compiled(images)
        program = torch.export.export(ours, (images,))
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp / "classifier.pt2"), inductor_configs=AOTI_OPTIONS
        )
        loaded = torch._inductor.aoti_load_package(package)
        cases["ours X50, .pt2 (AOTInductor)"] = lambda: loaded(images)
    import onnxruntime

    path = tmp / "classifier.onnx"
    with torch.no_grad():
        program = torch.onnx.export(ours, (images,), dynamo=True, opset_version=18, input_names=["images"])
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    array = images.cpu().numpy()
    cases["ours X50, ONNX Runtime"] = lambda: session.run(None, {"images": array})
    with torch.no_grad():
        times = interleaved(cases, args.reps, args.device)
    macs = forward_macs(ours, (images,))
    size = f"{batch}x{side}x{side} fp32"
    for label, seconds in times.items():
        rows.append(row("5. deploy: classification inference", label, seconds,
                        times["torchvision X50, eager"], batch, macs, peak, size))  # fmt: skip
