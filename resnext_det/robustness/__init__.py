"""How the detector fails off the benchmark: the corruption benchmark (P, mPC, rPC over 15
corruptions x 5 severities) and the calibration of its box scores (D-ECE, temperature and Platt
scaling). ``tools/eval_coco.py --corruptions / --calibration`` runs them on the PyTorch pair or
an exported model; ``tools/plot_robustness.py`` puts several runs side by side."""

from .benchmark import ROBUSTNESS_FILE, format_table, read_robustness, run_benchmark, summarize
from .corruptions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_GROUPS,
    SEVERITIES,
    CorruptedImages,
    Corruption,
    benchmark_corruption,
    corrupt_image,
    image_seed,
    parse_corruptions,
    parse_severities,
)
from .plots import write_robustness_pictures

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "ROBUSTNESS_FILE",
    "SEVERITIES",
    "Corruption",
    "CorruptedImages",
    "benchmark_corruption",
    "corrupt_image",
    "format_table",
    "image_seed",
    "parse_corruptions",
    "parse_severities",
    "read_robustness",
    "run_benchmark",
    "summarize",
    "write_robustness_pictures",
]
