"""What every benchmark table shares: interleaved timing, one row per measurement, and this
machine's ceilings to compare achieved multiply-adds per second with.

Ceilings: a 2048³ ``torch.mm`` is not what the convolutions can reach (the README's older
tables read 101-135% "of peak" against it). The ceiling used instead is oneDNN's best 1x1
convolution in channels_last, the GEMM the ResNeXt blocks spend most of their multiply-adds in
(their 1x1 convolutions carry about 91% of them), measured over the shapes of res2..res5.
"""

from __future__ import annotations

import statistics
import time

import torch
from fvcore.nn import FlopCountAnalysis

__all__ = ["conv1x1_ceiling", "forward_macs", "interleaved", "matmul_peak", "row", "synchronize"]


def synchronize(device: str) -> None:
    """Wait for the device's queued kernels: a GPU call returns before its work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(cases: dict, reps: int, device: str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each case in each repetition, timed A B C A B C ... after a warm-up round."""
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def matmul_peak(device: str, n: int = 2048, reps: int = 5) -> float:
    """fp32 multiply-adds per second of an n x n x n matmul on this device and thread count."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = statistics.median(interleaved({"mm": lambda: torch.mm(a, b)}, reps, device)["mm"])
    return n**3 / seconds


#: (channels, spatial side) of the 1x1 convolutions in res2..res5 of a 224x224 ResNeXt-50.
CONV1X1_SHAPES = ((256, 56), (512, 28), (1024, 14), (2048, 7))


def conv1x1_ceiling(device: str, batch: int = 8, reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The best multiply-adds per second of a channels_last 1x1 convolution (C -> C) in ``dtype``
    over ``CONV1X1_SHAPES`` at ``batch`` images, forward only (bf16 rows are compared with the
    bf16 ceiling: its units are another chip's worth of throughput)."""
    best = 0.0
    for channels, side in CONV1X1_SHAPES:
        layout = torch.channels_last
        conv = torch.nn.Conv2d(channels, channels, 1, bias=False).to(device, dtype, memory_format=layout)
        x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
        x = x.contiguous(memory_format=layout)
        with torch.no_grad():
            times = interleaved({"conv": lambda conv=conv, x=x: conv(x)}, reps, device)["conv"]
        seconds = statistics.median(times)
        best = max(best, batch * side * side * channels * channels / seconds)
    return best


def forward_macs(model, inputs) -> float:
    """fvcore's multiply-add count of one forward (a multiply-add counts once)."""
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return float(analysis.total())


def row(group, label, times, reference_times, images, macs, peak, size) -> dict:
    """One table row: median seconds, and the median and range of the ratios to the reference
    measured in the same repetition (``times is reference_times`` marks the reference row)."""
    seconds = statistics.median(times)
    ratios = [t / ref for t, ref in zip(times, reference_times, strict=True)]
    achieved = macs / seconds if macs else None
    return {
        "group": group,
        "model": label,
        "size": size,
        "reference": times is reference_times,
        "seconds": seconds,
        "all_seconds": times,
        "images_per_s": images / seconds,
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "gmacs": macs / 1e9 if macs else None,
        "gmac_per_s": achieved / 1e9 if achieved else None,
        "fraction_of_peak": achieved / peak if achieved else None,
    }
