"""Every tool, fed random bad input, ends with one ``error:`` paragraph and exit status 1.

Hypothesis draws, for each tool, a command line with one bad ``KEY VALUE`` override (a key that
does not exist, a value of the wrong type, a value out of range, a file that is not there) or a
bad file argument, and runs the tool in-process as ``python tools/<tool>.py`` would
(``runpy``, ``__name__ == "__main__"``). Whatever it draws, the tool must stop with
``SystemExit("error: <one paragraph>")``: never a traceback (an exception escaping the tool), never
another exit status. Bounded: 80 derandomized examples per tool; the preflight fails before any
model is trained, so each run takes well under a second.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
MISSING = "/nonexistent/resnext_det_fuzz"

#: (key, values of the wrong type, values out of range) for keys that every detection tool reads.
DETECTION_KEYS = [
    ("SOLVER.MAX_ITER", ["many", "1.5.2"], []),
    ("MODEL.RESNEXT.DEPTH", ["deep"], ["77", "0", "-50", "18"]),
    ("MODEL.RESNEXT.CARDINALITY", ["wide"], ["0", "-4"]),
    ("MODEL.RESNEXT.BOTTLENECK_WIDTH", ["thin"], ["0"]),
    ("MODEL.RESNEXT.FREEZE_AT", ["all"], ["9", "-1", "6"]),
    ("MODEL.RESNEXT.BLOCK_FORM", [], ["'fancy'", "'c'"]),
    ("MODEL.RESNEXT.NORM", [], ["'LayerNorm'"]),
    ("MODEL.RESNEXT.OUT_FEATURES", [], ["['res9']", "[]"]),
    ("MODEL.RESNETS.DEPTH", ["deep"], ["101"]),
    ("MODEL.RESNETS.NUM_GROUPS", [], ["32"]),
    ("MODEL.BACKBONE.FREEZE_AT", [], ["0"]),
    ("SOLVER.IMS_PER_BATCH", ["four"], ["3"]),  # 3 images over 2 processes
]
PRETRAIN_KEYS = [
    ("SOLVER.EPOCHS", ["long"], []),
    ("MODEL.RESNEXT.DEPTH", ["deep"], ["77", "0"]),
    ("MODEL.RESNEXT.FREEZE_AT", [], ["9"]),
    ("MODEL.RESNEXT.BLOCK_FORM", [], ["'fancy'"]),
    ("SOLVER.AMP", [], ["'fp8'"]),
    ("SOLVER.MEMORY_FORMAT", [], ["'nhwc'"]),
    ("SOLVER.IMS_PER_BATCH", ["many"], ["33"]),  # 33 images over 2 processes
    ("TEST.IMS_PER_BATCH", [], ["7"]),
]

CIFAR_KEYS = [
    ("SOLVER.EPOCHS", ["long"], []),
    ("MODEL.RESNEXT.DEPTH", ["deep"], ["50", "30", "0"]),  # CIFAR depths are 9n + 2
    ("MODEL.RESNEXT.CARDINALITY", [], ["0"]),
    ("DATA.DATASET", [], ["'svhn'"]),
    ("MODEL.NUM_CLASSES", ["ten"], ["100"]),  # CIFAR-10 has 10
    ("SOLVER.IMS_PER_BATCH", [], ["3"]),  # 3 images over 2 processes
]

unknown_keys = st.from_regex(r"\A(MODEL|SOLVER|INPUT|TEST)\.[A-Z]{3,8}_Z[A-Z]{0,4}\Z").map(lambda k: [k, "1"])


def bad_value(keys):
    cases = [(k, v) for k, wrong, out in keys for v in (*wrong, *out)]
    return st.sampled_from(cases).map(list)


def missing_file(key):
    return st.just([key, f"{MISSING}/weights.pth"])


def tool_cases(demo: str, cifar_root: str = MISSING):
    """Command lines (without the program name) of each tool, each with one bad input."""
    rpn = ["--config-file", "configs/demo/rpn_tiny_C4.yaml", "--num-gpus", "2"]
    frcn = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", demo, "--num-gpus", "2"]
    pretrain = ["--config-file", "configs/demo/pretrain_shapes_tiny.yaml", "--num-gpus", "2"]
    cifar = ["--config-file", "configs/demo/cifar_tiny.yaml", "--num-gpus", "2", "DATA.ROOT", cifar_root]
    detection_override = st.one_of(unknown_keys, bad_value(DETECTION_KEYS), missing_file("MODEL.WEIGHTS"))
    pretrain_override = st.one_of(
        unknown_keys,
        bad_value(PRETRAIN_KEYS),
        missing_file("MODEL.WEIGHTS"),
        st.just(["DATA.ROOT", MISSING]),
    )
    return {
        "train_rpn.py": st.one_of(
            detection_override.map(lambda o: [*rpn, *o]),
            st.just([*rpn, "--slurm", "--slurm-gpus-per-node", "0"]),
            st.just([*rpn, "--voc-dataset", "vz", MISSING, "train"]),
        ),
        "train_fast_rcnn.py": st.one_of(
            detection_override.map(lambda o: [*frcn, *o]),
            st.just([*frcn[:3], MISSING]),  # --proposals that is not there
        ),
        "eval_coco.py": st.one_of(
            detection_override.map(lambda o: ["--eval-only", *frcn, *o]),
            st.just(["--eval-only", *frcn, "--images", MISSING]),
            st.just(["--exported", MISSING]),
            st.just(["--exported", demo]),  # a folder without meta.json
            st.just(["--exported", demo, *frcn[:2]]),  # --exported and --proposals together
            st.just(["--eval-only", *frcn, "--images", "docs", "--analysis"]),  # no ground truth
        ),
        # browse_dataset.py builds no model: only keys that it reads can be wrong
        "browse_dataset.py": st.one_of(
            st.one_of(
                unknown_keys, st.sampled_from([["SOLVER.IMS_PER_BATCH", "x"], ["INPUT.FORMAT", "1"]])
            ).map(lambda o: [*rpn[:2], "--output", f"{MISSING}/browse", *o]),
            st.sampled_from(
                [
                    ["--config-file", MISSING],
                    [*rpn[:2], "--what", "proposals"],  # without --proposals
                    [*rpn[:2], "--what", "proposals", "--proposals", demo],  # no proposal files there
                    [*rpn[:2], "--proposals", demo],  # --proposals without --what proposals
                    [*rpn[:2], "--dataset-name", "not_registered"],
                    [*rpn[:2], "--num-images", "0"],
                    [*rpn[:2], "--dataset", "fz", f"{MISSING}/a.json", MISSING, "--dataset-name", "fz"],
                    [*rpn[:2], "--voc-dataset", "vz", MISSING, "val", "--dataset-name", "vz"],
                ]
            ),
        ),
        "plot_metrics.py": st.sampled_from([[MISSING], [demo], [demo, MISSING, "--output", demo]]),
        "export_model.py": st.sampled_from(
            [
                ["--rpn", MISSING, "--fast-rcnn", MISSING, "--output", f"{MISSING}/out"],
                ["--rpn", demo, "--fast-rcnn", demo, "--output", f"{MISSING}/out"],  # not stage folders
                ["--rpn", demo, "--fast-rcnn", demo, "--output", demo],  # an existing folder
                ["--rpn", demo, "--fast-rcnn", demo, "--output", f"{MISSING}/out", "--device", "cuda"],
            ]
        ),
        "predict.py": st.sampled_from(
            [
                ["--model", MISSING, "--input", MISSING],
                ["--model", demo, "--input", "README.md"],  # not an image
                ["--model", demo, "--input", "configs"],  # a folder without images
                ["--model", demo, "--input", "docs/demo_detections.jpg"],  # a folder without meta.json
                ["--rpn", demo, "--input", "docs/demo_detections.jpg"],  # --rpn without --fast-rcnn
                ["--input", "docs/demo_detections.jpg"],  # no model at all
                ["--model", demo, "--input", "docs/demo_detections.jpg", "--score-threshold", "2"],
            ]
        ),
        "pretrain_imagenet.py": pretrain_override.map(lambda o: [*pretrain, *o]),
        "train_cifar.py": st.one_of(unknown_keys, bad_value(CIFAR_KEYS), st.just(["DATA.ROOT", MISSING])).map(
            lambda o: [*cifar, *o]
        ),
        "convert_weights.py": st.sampled_from(
            [
                ["--source", "pretrain", f"{MISSING}/in.pth", "out.pth"],
                ["--source", "torchvision", f"{MISSING}/in.pth", "out.pth", "--config-file", MISSING],
            ]
        ),
    }


def run_tool(tool: str, argv: list[str], monkeypatch) -> SystemExit:
    monkeypatch.setattr(sys, "argv", [f"tools/{tool}", *argv])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "tools" / tool), run_name="__main__")
    return stopped.value


@pytest.mark.parametrize(
    "tool",
    [
        "train_rpn.py",
        "train_fast_rcnn.py",
        "eval_coco.py",
        "pretrain_imagenet.py",
        "convert_weights.py",
        "export_model.py",
        "predict.py",
        "browse_dataset.py",
        "plot_metrics.py",
        "train_cifar.py",
    ],
)
def test_random_bad_input_gives_one_error_paragraph(tool, demo_root, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(ROOT)
    demo = str(tmp_path_factory.mktemp("no_proposals"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the same checks on a GPU machine
    cifar_root = MISSING
    if tool == "train_cifar.py":  # a valid CIFAR folder: only the drawn override is wrong
        from pretrain.synthetic import write_cifar_folder

        cifar_root = str(write_cifar_folder(tmp_path_factory.mktemp("cifar"), per_class=(2, 1)))

    @settings(max_examples=80, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(argv=tool_cases(demo, cifar_root)[tool])
    def check(argv):
        stopped = run_tool(tool, argv, monkeypatch)
        message = stopped.code
        assert isinstance(message, str) and message.startswith("error: "), (argv, message)
        assert "\n\n" not in message and "Traceback" not in message, (argv, message)

    check()
