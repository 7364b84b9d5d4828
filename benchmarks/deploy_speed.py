"""``benchmarks/speed.py --only deploy``: inference of the paper's two-stage detector (and of the
classifier) by backend, on the same image and the same RoI count.

Detection, image (uint8, BGR) to detections, the RPN + Fast R-CNN pair of appendix B (two trunks,
no feature sharing), random weights, X50 32x4d C4:

- detectron2 eager (ref): detectron2's own ResNeXt (``build_resnet_backbone`` with ``NUM_GROUPS
  32``, ``Res5ROIHeads``) in ``TwoStagePredictor``, FrozenBN as detectron2 runs it;
- ours eager: this project's models in ``TwoStagePredictor``, FrozenBN folded;
- ours ``TwoStageGraph`` eager, then exported: ``.pt2`` (torch.export + AOTInductor, freezing)
  and ONNX (``torch.onnx.export``), run by ONNX Runtime's CPU provider and by OpenVINO (in f32
  precision: ``deploy.runtime._OpenVINO``);
- the same ONNX model in int8 (``deploy.quantize.quantize_onnx_file``: ONNX Runtime's static QDQ
  quantization, MinMax, calibrated on 4 noise images: the speed does not depend on the ranges; the
  stems in fp32, as ``export_model.py --quantize int8`` leaves them),
  run by both runtimes; OpenVINO's own int8 through NNCF (``nncf.quantize`` on the fp32 model,
  the same images) and OpenVINO's default precision (bf16 on a CPU with bf16 units).

Not with ``--quick`` (the test suite's smoke test, which ``benchmarks/gpu_check.py`` runs in the
process that ran every training stage): the OpenVINO rows. In that process, once OpenVINO had
run, the next child process it started (``platform.processor()``'s ``uname``, the memory
group's forkserver) crashed it with a corrupted heap (SIGSEGV in malloc, 2026-12-06; not seen in
a fresh process, nor with the OpenVINO rows left out). OpenVINO's own tests run in the suite's
workers (tests/deploy/test_quantize.py, tests/tools/test_demo.py).

Where each graph backend's time goes (resize + backbones, RPN + NMS, RoI head, the rest) is
``deploy_profile``'s.

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
from resnext_det.deploy.quantize import DEFAULT_KEEP_FP32, quantize_onnx_file
from resnext_det.deploy.runtime import _OnnxRuntime, _OpenVINO
from resnext_det.engine import setup_cfg
from resnext_det.engine.two_stage import TwoStagePredictor, build_trained_model

import numpy as np
import torch
from deploy_profile import profile_eager, profile_onnxruntime, profile_openvino
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
    int8_path = tmp / "detector_int8.onnx"
    noise = [lambda seed=seed: _noise(seed, height, width) for seed in range(1, 5)]
    quantize_onnx_file(tmp / "detector.onnx", int8_path, noise, keep_fp32=DEFAULT_KEEP_FP32)
    runners = {}  # label -> a runtime's call on one image
    test_size = {"min": height, "max": 1333}  # the graph's: the image is at the test size
    openvino = args.device == "cpu" and not args.quick  # see the module docstring
    if openvino:
        runners["ours OpenVINO (f32)"] = _OpenVINO(tmp / "detector.onnx", args.device, test_size)
    runners["ours ONNX Runtime int8 (QDQ, calibrated)"] = _OnnxRuntime(int8_path, args.device)
    if openvino:
        runners["ours OpenVINO int8 (the same QDQ model)"] = _OpenVINO(int8_path, args.device, test_size)
        runners["ours OpenVINO int8 (NNCF)"] = _nncf_int8(tmp / "detector.onnx", noise)
        runners["ours OpenVINO, its default precision"] = _openvino_default(tmp / "detector.onnx")
    cases.update({label: (lambda run=run: run(image)) for label, run in runners.items()})
    with torch.no_grad():
        times = interleaved(cases, args.reps, args.device)
    counts = {name: sorted(set(seen)) for name, seen in rois.items()}
    if len({tuple(c) for c in counts.values()}) != 1:
        raise RuntimeError(f"the backends ran their res5 heads on different numbers of RoIs: {counts}")
    reference = times["detectron2 X50 pair, eager"]
    size = f"1x{height}x{width} uint8, {args.test_proposals} RoIs"
    profiles = _profiles(args, graph, tensor, image, tmp, int8_path)
    for label, seconds in times.items():
        rows.append(row("5. deploy: RPN + Fast R-CNN, image to detections", label, seconds, reference, 1,
                        None, peak, size))  # fmt: skip
        if label in profiles:
            rows[-1]["profile"] = profiles[label]


def _profiles(args, graph, tensor, image, tmp: Path, int8_path: Path) -> dict[str, dict[str, float]]:
    """Where the time goes (``deploy_profile``) for the graph backends, by row label."""
    reps = max(1, args.reps)
    profiles = {
        "ours TwoStageGraph, eager": profile_eager(graph, tensor, reps),
        "ours ONNX Runtime (opset 18)": profile_onnxruntime(tmp / "detector.onnx", image, reps, tmp),
        "ours ONNX Runtime int8 (QDQ, calibrated)": profile_onnxruntime(int8_path, image, reps, tmp),
    }
    if args.device == "cpu" and not args.quick:
        profiles["ours OpenVINO (f32)"] = profile_openvino(tmp / "detector.onnx", image, reps)
        profiles["ours OpenVINO int8 (the same QDQ model)"] = profile_openvino(int8_path, image, reps)
    return profiles


def _noise(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _nncf_int8(path: Path, images: list):
    """OpenVINO's own int8: NNCF's post-training quantization of the fp32 model (its default
    preset: symmetric weights and activations), compiled in f32 precision like the other rows."""
    import nncf
    import openvino

    core = openvino.Core()
    model = nncf.quantize(core.read_model(str(path)), nncf.Dataset([read() for read in images]),
                          subset_size=len(images))  # fmt: skip
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda image: compiled([image])


def _openvino_default(path: Path):
    """OpenVINO as it runs an fp32 model unasked: bf16 on a CPU with bf16 units (different boxes)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
    )
    return lambda image: compiled([image])


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
