#!/usr/bin/env python
"""Evaluate a Fast R-CNN of the paper's schedule with COCO AP, or draw its detections on images.

  # AP, AP50, AP75, APs/m/l and per-category AP on DATASETS.TEST (minival), as a table and JSON
  python tools/eval_coco.py --config-file configs/COCO-Detection/fast_rcnn_X50_32x4d_C4.yaml \
      --proposals out/rpn_x50 MODEL.WEIGHTS out/frcn_x50/model_final.pth
  # the RPN (from --proposals: its config.yaml and model_final.pth) and the Fast R-CNN together
  # on plain images, detections drawn to PNG files
  python tools/eval_coco.py ... --images some/folder --output vis/
  # an exported model (tools/export_model.py; ONNX Runtime or AOTInductor by its meta.json) on
  # the DATASETS.TEST it records, or on the DATASETS.TEST / --dataset given here
  python tools/eval_coco.py --exported exported/x50 OUTPUT_DIR out/eval_onnx
  # either of the first and the last, then the error analysis of its detections: per-class
  # precision-recall curves, the COCO error breakdown, a confusion matrix (PNG + analysis.json)
  python tools/eval_coco.py ... --analysis

  # the corruption benchmark (P, mPC, rPC; robustness.json, a heatmap, the severity curves): the
  # RPN of --proposals runs on each corrupted image (an exported model does it by itself)
  python tools/eval_coco.py ... --corruptions all --severities 1 2 3 4 5 OUTPUT_DIR out/robust
  python tools/eval_coco.py --exported exported/x50 --corruptions gaussian_noise,motion_blur OUTPUT_DIR ...
  # how well the box scores are calibrated (D-ECE, reliability diagrams), and temperature / Platt
  # scaling fitted on another split's detections and measured on the test set's
  python tools/eval_coco.py ... --calibration [--calibration-fit coco_2014_valminusminival] \
      OUTPUT_DIR out/calib

  # a LazyConfig file, with detectron2's key=value overrides (with --images and --exported too)
  python tools/eval_coco.py --config-file configs/lazy/fast_rcnn_X50_32x4d_C4.py \
      --proposals out/rpn_x50 train.init_checkpoint=out/frcn_x50/model_final.pth

Results: OUTPUT_DIR (train.output_dir) /coco_eval.json (and detectron2's
inference/<dataset>/coco_instances_results.json); with --analysis, OUTPUT_DIR/analysis/<dataset>/
(resnext_det.analysis.ANALYSIS_FILES); with --corruptions, OUTPUT_DIR/robustness.json,
robustness_heatmap.png, robustness_curves.png; with --calibration, OUTPUT_DIR/calibration.json and
reliability_<dataset>_iou50.png / _iou75.png (docs/analysis.md).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.analysis import analyze_detections
from resnext_det.analysis.pictures import category_ids, dataset_metadata
from resnext_det.atomic_files import atomic_write_json
from resnext_det.data.coco import check_datasets
from resnext_det.data.demo_dataset import prepare_demo_splits
from resnext_det.deploy import BACKENDS, evaluate_predictor, load, open_source, predict_to_folder, read_meta
from resnext_det.engine import TwoStagePredictor, setup_cfg
from resnext_det.engine.cli import (
    add_dataset_argument,
    check_device,
    exit_on_user_error,
    give_back_overrides,
    preflight,
    register_datasets_from_args,
    run_tool,
)
from resnext_det.engine.lazy_config import is_lazy_config
from resnext_det.engine.run_config import read_run_config, setup_run
from resnext_det.engine.trained_stage import read_trained_stage
from resnext_det.errors import ConfigError
from resnext_det.robustness import (
    SEVERITIES,
    benchmark_corruption,
    format_table,
    parse_corruptions,
    parse_severities,
    run_benchmark,
    write_robustness_pictures,
)
from resnext_det.robustness.calibration import DEFAULT_MIN_SCORE, calibrate_predictor, format_report

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.utils import comm


def parse_args(argv=None):
    parser = add_dataset_argument(default_argument_parser(epilog=__doc__))
    parser.add_argument("--proposals", default="", help="stage 1's output directory (with --config-file)")
    parser.add_argument("--exported", default="", help="evaluate this exported model's folder instead")
    parser.add_argument(
        "--backend",
        choices=sorted({b for backends in BACKENDS.values() for b in backends}),
        default=None,
        help="runtime of --exported (default: onnxruntime for ONNX, aotinductor for .pt2)",
    )
    parser.add_argument(
        "--images",
        default="",
        help="draw detections on this folder of images (or an image, or a video), as predict.py does",
    )
    parser.add_argument("--output", default="", help="folder for the drawn images (with --images)")
    parser.add_argument(
        "--analysis",
        action="store_true",
        help="also PR curves, error breakdown, confusion matrix (PNG + JSON)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="minimum score of the drawn detections (--images) and of the confusion matrix's (--analysis)",
    )
    robust = parser.add_argument_group("robustness and calibration (docs/analysis.md)")
    robust.add_argument(
        "--corruptions",
        default="",
        help="'all' (the benchmark's 15) or names separated by commas: AP under each, P / mPC / rPC",
    )
    robust.add_argument(
        "--severities", nargs="+", default=None, help="of --corruptions (1-5; default: all five)"
    )
    robust.add_argument(
        "--calibration", action="store_true", help="D-ECE of the box scores and reliability diagrams"
    )
    robust.add_argument(
        "--calibration-fit",
        default="",
        metavar="DATASET",
        help="fit temperature and Platt scaling on this registered split (with annotations)",
    )
    robust.add_argument(
        "--calibration-min-score",
        type=float,
        default=DEFAULT_MIN_SCORE,
        help="detections below this score are left out of D-ECE and the fits",
    )
    robust.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that read and corrupt the images while the model runs (0: this one; "
        "glass_blur takes ~4 s per COCO image)",
    )
    robust.add_argument(
        "--max-images",
        type=int,
        default=0,
        help="with --corruptions / --calibration: the first N images of each split only (a quick look)",
    )
    return give_back_overrides(parser.parse_args(argv), "severities")


#: VOC's two metrics (resnext_det.data.voc.VOCBothMetricsEvaluator), printed when present
VOC_KEYS = ("AP50_voc07", "AP50_voc12")


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def check_model_arguments(args) -> None:
    if bool(args.exported) == bool(args.proposals):
        raise ConfigError(
            "give --proposals (stage 1's OUTPUT_DIR, with the Fast R-CNN's --config-file) or --exported "
            "(a tools/export_model.py folder), not both"
            if args.exported
            else "--proposals is required (stage 1's OUTPUT_DIR), unless --exported names an exported model"
        )
    if args.backend and not args.exported:
        raise ConfigError("--backend chooses the runtime of an --exported model; the stages run in PyTorch")
    if args.exported and args.images:
        raise ConfigError(
            "--images draws the PyTorch pair's detections; for an exported model use tools/predict.py"
        )
    if args.analysis and args.images:
        raise ConfigError("--analysis needs a dataset's ground truth: it cannot run with --images")
    robustness = bool(args.corruptions) or args.calibration
    if robustness and (args.images or args.analysis):
        raise ConfigError("--corruptions and --calibration run on their own: not with --images or --analysis")
    if robustness and (args.num_gpus > 1 or args.num_machines > 1):
        raise ConfigError(
            "--corruptions and --calibration run the model in one process, on one device: drop "
            "--num-gpus / --num-machines (--workers N reads and corrupts the images in parallel)"
        )
    if args.corruptions and args.calibration:
        raise ConfigError("run --corruptions and --calibration as two commands (each its own OUTPUT_DIR)")
    if args.calibration_fit and not args.calibration:
        raise ConfigError("--calibration-fit is a setting of --calibration")
    if args.severities is not None and not args.corruptions:
        raise ConfigError("--severities is a setting of --corruptions")
    if args.calibration_min_score != DEFAULT_MIN_SCORE and not args.calibration:
        raise ConfigError("--calibration-min-score is a setting of --calibration")
    if args.max_images and not robustness:
        raise ConfigError("--max-images is a setting of --corruptions and --calibration")
    if args.workers and not robustness:
        raise ConfigError("--workers is a setting of --corruptions and --calibration")
    if args.workers < 0:
        raise ConfigError(f"--workers: {args.workers} is negative; expected a number of processes (0 = none)")
    if args.max_images < 0:
        raise ConfigError(
            f"--max-images: {args.max_images} is negative; expected a number of images (0 = all)"
        )
    if args.corruptions:  # before any model is built: a typo costs nothing
        args.corruptions = parse_corruptions(args.corruptions)
        args.severities = parse_severities(args.severities or SEVERITIES)


def exported_settings(args) -> tuple[list[str], str, str, dict]:
    """(test sets, output folder, device, meta.json) of an exported model's evaluation: the
    DATASETS.TEST and device recorded in its meta.json, unless --config-file (YAML or LazyConfig)
    or the overrides name others."""
    meta = read_meta(args.exported)
    recorded_device = meta.get("device", "cpu")  # where it was exported (a .pt2 runs only there)
    if is_lazy_config(args.config_file):
        run = read_run_config(args, test_only=True)
        given = any(o.startswith("train.device=") for o in args.opts)
        names, output_dir = run.test_sets, run.output_dir
        device = run.device.value if given else recorded_device
    else:

        def recorded(cfg):
            cfg.DATASETS.TEST = tuple(meta.get("datasets_test") or ())
            cfg.MODEL.DEVICE = recorded_device

        cfg = setup_cfg(args.config_file, args.opts, defaults=recorded)
        names, output_dir, device = list(cfg.DATASETS.TEST), cfg.OUTPUT_DIR, cfg.MODEL.DEVICE
    if not names:
        raise ConfigError(
            f"{args.exported}/meta.json records no DATASETS.TEST: name one (DATASETS.TEST \"('NAME',)\")"
        )
    prepare_demo_splits(names)
    check_datasets(names)
    return names, output_dir, device, meta


def exported_predictor(args):
    """(predictor, test sets, output folder, meta.json) of ``--exported``."""
    names, output_dir, device, meta = exported_settings(args)
    check_device(device)
    return load(args.exported, device=device, backend=args.backend), names, output_dir, meta


def evaluate_exported(args) -> dict:
    predictor, names, output_dir, meta = exported_predictor(args)
    results = {}
    for name in names:
        results[name] = evaluate_predictor(predictor, name, Path(output_dir, "inference", name))
    precision = (meta.get("quantization") or {}).get("dtype", "fp32")
    report(
        output_dir,
        results,
        f"exported {meta['format']} {precision} model {args.exported} ({predictor.backend_name})",
    )
    if args.analysis:
        analyze(output_dir, names, args.score_threshold)
    return results


def report(output_dir, results: dict, what: str = "") -> None:
    # strict JSON: a metric that cannot be computed (no objects of that size) is null, not NaN
    atomic_write_json(Path(output_dir, "coco_eval.json"), _nan_to_none(results))
    for name, r in results.items():
        box = r["bbox"]
        source = f"  [{what}]" if what else ""
        keys = [k for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", *VOC_KEYS) if k in box]
        print(f"{name}: " + "  ".join(f"{k} {box[k]:.1f}" for k in keys) + source)


def analyze(output_dir, dataset_names, score_threshold: float) -> None:
    """The error analysis of each test dataset's detections, from the files the evaluation wrote:
    the ground truth json that COCOEvaluator read (or converted the dataset to), and its results."""
    for name in dataset_names:
        if MetadataCatalog.get(name).get("evaluator_type", "coco") == "pascal_voc":
            print(f"{name}: no COCO error analysis for a VOC folder (its evaluation is VOC's mAP)")
            continue
        output = Path(output_dir, "analysis", name)
        analysis = analyze_detections(
            MetadataCatalog.get(name).json_file,
            Path(output_dir, "inference", name, "coco_instances_results.json"),
            output,
            score_threshold=score_threshold,
        )
        breakdown = analysis["error_breakdown"]["all"] or {}
        areas = "  ".join(f"{t} {100 * ap:.1f}" for t, ap in breakdown.items())
        print(f"{name}: error breakdown (AP once each error is forgiven)  {areas}")
        print(f"{name}: {len(analysis['files'])} pictures and analysis.json in {output}")


def evaluate(args) -> dict:
    run = setup_run(args, proposals_dir=args.proposals, test_only=True)  # YAML or LazyConfig alike
    _, results = run.train(eval_only=True)
    if comm.is_main_process():
        report(run.output_dir, results)
        if args.analysis:
            analyze(run.output_dir, run.test_sets, args.score_threshold)
    return results


def pytorch_predictor(args):
    """The pair of ``--config-file`` and ``--proposals`` (stage 1's folder: its RPN runs on each
    image), its run config, and the stage 2 weights it loaded."""
    run = read_run_config(args, test_only=True)  # YAML or LazyConfig alike
    stage2 = read_trained_stage(run.cfg, args.config_file)
    predictor = TwoStagePredictor.from_stage1_dir(args.proposals, stage2)
    return predictor, run, stage2.weights


def draw(args) -> list[Path]:
    """The pair's detections on ``--images`` (a folder, an image or a video), drawn, and in
    COCO's results format in ``detections.json``, as ``tools/predict.py`` writes them."""
    predictor, _, _ = pytorch_predictor(args)
    metadata = dataset_metadata(predictor.dataset_names[0] if predictor.dataset_names else None)
    output = Path(args.output or "vis")
    summary = predict_to_folder(
        predictor,
        open_source(args.images, flag="--images"),
        output,
        metadata=metadata,
        category_ids=category_ids(metadata),
        score_threshold=args.score_threshold,
    )
    print(f"drew {summary['frames']} images into {output}")
    return summary["written"]


def model_under_test(args):
    """(predictor, test sets, output folder, the model's name in the result files) of the PyTorch
    pair or of ``--exported``."""
    if args.exported:
        predictor, names, output_dir, meta = exported_predictor(args)
        precision = (meta.get("quantization") or {}).get("dtype", "fp32")
        return predictor, names, output_dir, f"exported {meta['format']} {precision} {args.exported}"
    predictor, run, weights = pytorch_predictor(args)
    names = list(run.test_sets)
    prepare_demo_splits(names)
    check_datasets(names)
    return predictor, names, run.output_dir, f"{args.config_file} with {weights}, stage 1 {args.proposals}"


def first_images(name: str, count: int) -> list[dict] | None:
    """The first ``count`` images of ``name`` (None: all of them)."""
    return DatasetCatalog.get(name)[:count] if count else None


def evaluate_robustness(args) -> dict:
    """The corruption benchmark of the model on its (one) test set: robustness.json, its
    pictures and the log's table in OUTPUT_DIR."""
    corruptions = [benchmark_corruption(name) for name in args.corruptions]  # imagecorruptions checked
    predictor, names, output_dir, model = model_under_test(args)
    if len(names) != 1:
        raise ConfigError(
            f"--corruptions evaluates one test set; DATASETS.TEST has {len(names)} ({', '.join(names)}): "
            f"name one with --dataset or DATASETS.TEST"
        )
    (name,) = names
    state = run_benchmark(
        predictor,
        name,
        output_dir,
        corruptions,
        args.severities,
        model=model,
        records=first_images(name, args.max_images),
        workers=args.workers,
    )
    pictures = write_robustness_pictures(state, output_dir)
    print(format_table(state))
    print(f"{name}: robustness.json and {', '.join(p.name for p in pictures)} in {output_dir}")
    return state


def evaluate_calibration(args) -> dict:
    """D-ECE of the model's detections on each test set, and with --calibration-fit the two
    scalings fitted on that split: calibration.json and the reliability diagrams in OUTPUT_DIR."""
    predictor, names, output_dir, _ = model_under_test(args)  # (registers the config's datasets)
    if args.calibration_fit:
        if args.calibration_fit not in DatasetCatalog.list():
            raise ConfigError(
                f"--calibration-fit: {args.calibration_fit!r} is not a registered dataset "
                f"(give --dataset NAME JSON IMAGE_ROOT to register a COCO json)"
            )
        if args.calibration_fit in names:
            raise ConfigError(
                f"--calibration-fit: {args.calibration_fit!r} is also the test set: scalings fitted on the "
                f"detections they are measured on look better than they are; fit on another split"
            )
        prepare_demo_splits([args.calibration_fit])
        check_datasets([args.calibration_fit])
    report = calibrate_predictor(
        predictor,
        names,
        output_dir,
        fit_dataset=args.calibration_fit or None,
        max_images=args.max_images,
        min_score=args.calibration_min_score,
        workers=args.workers,
    )
    print("\n".join(format_report(report)))
    print(f"calibration.json and the reliability diagrams in {output_dir}")
    return report


def main(args):
    register_datasets_from_args(args)
    return draw(args) if args.images else evaluate(args)


if __name__ == "__main__":
    args = parse_args()
    with exit_on_user_error():
        check_model_arguments(args)
    if args.images or args.exported or args.corruptions or args.calibration:
        # one process draws, runs the exported model, or runs a predictor over (corrupted) images
        with exit_on_user_error():
            register_datasets_from_args(args)
            if args.corruptions:
                done = evaluate_robustness(args)
            elif args.calibration:
                done = evaluate_calibration(args)
            else:
                done = draw(args) if args.images else evaluate_exported(args)
        sys.exit(0 if done else 1)
    run_tool(main, args, preflight=lambda: preflight(args, args.proposals, test_only=True))
