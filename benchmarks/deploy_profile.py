"""Where the exported detector's time goes, per backend: resize + backbones, RPN + NMS, RoI head,
the rest (box decoding, per-class NMS, the boxes in image pixels), so that a speed row that misses
its target is explained by its profile (``benchmarks/speed.py --only deploy``).

Each backend reports its own per-node times: ONNX Runtime's profiler (``enable_profiling``),
OpenVINO's performance counters (``PERF_COUNT``), and for eager PyTorch forward hooks on
``TwoStageGraph``'s modules. A node's section comes from the module the exporter recorded for it
(``pkg.torch.onnx.name_scopes``: ``rpn_backbone``, ``rpn_head``, ``res5`` ...); the nodes written
in ``TwoStageGraph.forward`` itself have none and are placed by the graph's structure: what the
backbones read is the resize, what the RoI pooling's boxes come from is the RPN's top-k, decoding
and NMS, the RoI pooling is the RoI head's, and the rest is post-processing. A quantize /
dequantize pair belongs to the node it feeds. Runtimes fuse and rewrite nodes; a fused node is
named after one of its parts or outputs, and a name that matches none (ONNX Runtime's layout
reorders, ``ReorderInput`` / ``ReorderOutput``) lands in "other".
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

from resnext_det.deploy.quantize import module_path

import numpy as np
import torch

__all__ = ["SECTIONS", "onnx_sections", "profile_eager", "profile_onnxruntime", "profile_openvino"]

SECTIONS = ("resize + backbones", "RPN + NMS", "RoI head", "post-processing", "reorders, other")
_SCOPE_SECTIONS = {
    "rpn_normalize": SECTIONS[0], "rpn_backbone": SECTIONS[0], "box_normalize": SECTIONS[0],
    "box_backbone": SECTIONS[0], "rpn_head": SECTIONS[1], "res5": SECTIONS[2], "cls_score": SECTIONS[2],
    "bbox_pred": SECTIONS[2],
}  # fmt: skip
_ROI_POOLING = ("RoiAlign", "MaxRoiPool")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _scope(node) -> str:
    """The ``TwoStageGraph`` module (first component) that made ``node``, "" for its own code."""
    return module_path(node).split(".")[0]


def onnx_sections(path: str | Path) -> dict[str, str]:
    """``{node name: section}`` for every node of the ONNX model at ``path`` (module docstring)."""
    import onnx

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers = collections.defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    section = {n.name: _SCOPE_SECTIONS[_scope(n)] for n in nodes if _scope(n) in _SCOPE_SECTIONS}
    section.update({n.name: SECTIONS[2] for n in nodes if n.op_type in _ROI_POOLING})

    def claim(starts, label):
        """Unplaced, non-Q/DQ ancestors of the tensors ``starts`` go to ``label``."""
        stack = list(starts)
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.name in section or node.op_type in _QDQ:
                if node is not None and node.op_type in _QDQ:
                    stack.extend(node.input)
                continue
            section[node.name] = label
            stack.extend(node.input)

    backbone_inputs = [i for n in nodes if section.get(n.name) == SECTIONS[0] for i in n.input]
    claim(backbone_inputs, SECTIONS[0])
    claim([n.input[1] for n in nodes if n.op_type in _ROI_POOLING], SECTIONS[1])
    for node in nodes:
        if node.name not in section and node.op_type not in _QDQ:
            section[node.name] = SECTIONS[3]
    for node in reversed(nodes):  # a Q/DQ pair feeds a node (or another Q/DQ) placed by now
        if node.op_type in _QDQ:
            fed = [c for out in node.output for c in consumers[out] if c.name in section]
            section[node.name] = section[fed[0].name] if fed else SECTIONS[4]
    # ONNX Runtime names some nodes it rewrites after their output (``relu_41_nchwc``)
    section.update({out: section[n.name] for n in nodes for out in n.output if out not in section})
    return section


def _place(name: str, sections: dict[str, str]) -> str:
    """A runtime's node name to a section: the ONNX node itself, or a fused node named after one
    of its parts (a name with the ONNX node's name at its start or after a separator)."""
    name = name.removesuffix("_nchwc")
    if name in sections:
        return sections[name]
    for part in name.replace("/", " ").replace(",", " ").split():
        if part in sections:
            return sections[part]
    for known, label in sections.items():
        if name.startswith(known + "_") or name.startswith(known + "/"):
            return label
    return SECTIONS[4]


def _fractions(seconds: dict[str, float]) -> dict[str, float]:
    total = sum(seconds.values()) or 1.0
    return {label: seconds.get(label, 0.0) / total for label in SECTIONS}


def profile_onnxruntime(path: str | Path, image: np.ndarray, reps: int, tmp: Path) -> dict[str, float]:
    """Fractions of ONNX Runtime's node time per section over ``reps`` runs (after a warm-up)."""
    import onnxruntime

    sections = onnx_sections(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / f"ort_{Path(path).stem}")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(reps + 1):
        session.run(None, {"image_bgr": image})
    events = json.loads(Path(session.end_profiling()).read_text())
    seconds: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            seconds[_place(event["name"][: -len("_kernel_time")], sections)] += event["dur"] / 1e6
    return _fractions(seconds)


def profile_openvino(
    path: str | Path, image: np.ndarray, reps: int, precision: str = "f32"
) -> dict[str, float]:
    """Fractions of OpenVINO's node time per section (its performance counters) over ``reps`` runs."""
    import openvino

    sections = onnx_sections(path)
    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": precision,
              "PERF_COUNT": True}  # fmt: skip
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    request.infer([image])
    seconds: dict[str, float] = collections.defaultdict(float)
    for _ in range(reps):
        request.infer([image])
        for info in request.profiling_info:
            seconds[_place(info.node_name, sections)] += info.real_time.total_seconds()
    return _fractions(seconds)


def profile_eager(graph, image: torch.Tensor, reps: int) -> dict[str, float]:
    """Fractions of eager ``TwoStageGraph`` time per section: forward hooks time the trunks and
    the RoI head's modules, and ``preprocess`` / ``proposals`` are timed as wholes; RPN + NMS is
    ``proposals`` less the RPN's trunk, post-processing what remains of the call (the RoI
    pooling with it)."""
    seconds: dict[str, float] = collections.defaultdict(float)
    handles, started = [], {}

    def hook(module, label):
        def before(m, inputs):
            started[id(m)] = time.perf_counter()

        def after(m, inputs, outputs):
            seconds[label] += time.perf_counter() - started[id(m)]

        handles.extend((module.register_forward_pre_hook(before), module.register_forward_hook(after)))

    for name in ("rpn_normalize", "rpn_backbone"):
        hook(getattr(graph, name), "rpn trunk")
    for name in ("box_normalize", "box_backbone"):
        hook(getattr(graph, name), "box trunk")
    for name in ("res5", "cls_score", "bbox_pred"):
        hook(getattr(graph, name), SECTIONS[2])

    def timed_method(name):
        method = getattr(graph, name)

        def timed(*args):
            start = time.perf_counter()
            result = method(*args)
            seconds[name] += time.perf_counter() - start
            return result

        setattr(graph, name, timed)

    timed_method("preprocess")
    timed_method("proposals")
    total = 0.0
    try:
        with torch.no_grad():
            graph(image)
            seconds.clear()
            for _ in range(reps):
                start = time.perf_counter()
                graph(image)
                total += time.perf_counter() - start
    finally:
        del graph.preprocess, graph.proposals  # the instance attributes: the methods again
        for handle in handles:
            handle.remove()
    result = {
        SECTIONS[0]: seconds["preprocess"] + seconds["rpn trunk"] + seconds["box trunk"],
        SECTIONS[1]: seconds["proposals"] - seconds["rpn trunk"],
        SECTIONS[2]: seconds[SECTIONS[2]],
    }
    result[SECTIONS[3]] = max(total - sum(result.values()), 0.0)
    return _fractions(result)
