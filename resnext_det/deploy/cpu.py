"""What this CPU offers int8 inference, read once: the export records it beside the speed it
measured, and a quantized model warns on a CPU that lacks it.

int8 convolutions are fast on x86 only with a dot-product instruction that multiplies and adds
8-bit values into 32-bit sums in one step: AVX-512 VNNI (``avx512_vnni``), its 256-bit twin
AVX-VNNI (``avx_vnni``), or AMX (``amx_int8``). Without one, ONNX Runtime's u8s8 kernels fall
back on AVX2's ``VPMADDUBSW``, whose 16-bit intermediate sums saturate (ONNX Runtime's
quantization docs) and which is little faster than fp32: int8 can then be slower.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

__all__ = ["INT8_DOT_PRODUCT_FLAGS", "cpu_description", "cpu_features", "has_int8_dot_product"]

#: /proc/cpuinfo flags of the x86 instructions that make int8 convolutions fast
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: the flags worth recording beside a measured speed
_RECORDED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", *INT8_DOT_PRODUCT_FLAGS)


@functools.lru_cache(maxsize=1)
def cpu_features() -> dict:
    """``{"model": "...", "flags": [the recorded flags this CPU has], "torch_capability": "AVX512",
    "cores": N}`` (x86 Linux; elsewhere the flags are empty and ``model`` is ``platform.machine()``)."""
    import torch

    model, flags = platform.machine(), set()  # not platform.processor(): it runs `uname -p`
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {
        "model": model,
        "flags": [flag for flag in _RECORDED_FLAGS if flag in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
    }


def has_int8_dot_product(features: dict | None = None) -> bool:
    """Whether the CPU (``cpu_features()`` by default) has VNNI or AMX (see the module docstring)."""
    features = cpu_features() if features is None else features
    return any(flag in features["flags"] for flag in INT8_DOT_PRODUCT_FLAGS)


def cpu_description(features: dict | None = None) -> str:
    """``"AMD EPYC (avx2, avx512f, avx512_vnni), 2 cores"``: one line for logs and tables."""
    features = cpu_features() if features is None else features
    flags = ", ".join(features["flags"]) or "no AVX2"
    return f"{features['model']} ({flags}), {features['cores']} cores"
