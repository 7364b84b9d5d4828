"""Map weights between the three forms of Fig. 3, so one trained model runs in any form.

Form (c) is canonical. Its grouped 3x3 weight ``[C*d, d, 3, 3]`` is the C branch 3x3 weights of
forms (a)/(b) stacked; its first 1x1 ``[C*d, in, 1, 1]`` stacks the branch 1x1s; in form (a) the
last 1x1 ``[out, C*d, 1, 1]`` splits along its input channels into C branch 1x1s, and the norm
after it becomes ``aggregate_norm`` (footnote 6). Per-channel norm tensors follow their channels.

Works on whole state dicts (a classifier, a backbone or a detector): every block is found by its
keys and converted; all other keys pass through unchanged.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch

from ..template import BLOCK_FORMS

__all__ = ["convert_block_form", "detect_block_form"]

# A block's prefix is "" for a bare block's own state dict, else e.g. "backbone.res2.0.".
_GROUPED_BLOCK = re.compile(r"^(?P<prefix>.*\.)?conv2\.weight$")
_BRANCHED_BLOCK = re.compile(r"^(?P<prefix>.*\.)?branches\.0\.conv2\.weight$")


def _block_prefixes(state_dict) -> dict[str, str]:
    """{block prefix: its form} for every ResNeXt block in ``state_dict``."""
    forms = {}
    for key in state_dict:
        if m := _BRANCHED_BLOCK.match(key):
            prefix = m["prefix"] or ""
            has_conv3 = f"{prefix}branches.0.conv3.weight" in state_dict
            forms[prefix] = "aggregated" if has_conv3 else "concat"
        elif (m := _GROUPED_BLOCK.match(key)) and "branches." not in key:
            forms[m["prefix"] or ""] = "grouped"
    return forms


def detect_block_form(state_dict) -> str:
    """The single form used by ``state_dict``'s blocks; ValueError if none or mixed."""
    forms = set(_block_prefixes(state_dict).values())
    if len(forms) != 1:
        raise ValueError(f"expected ResNeXt blocks of exactly one form, found forms {sorted(forms)}")
    return forms.pop()


def _take(state_dict, prefix: str) -> dict[str, torch.Tensor]:
    """Remove and return the entries under ``prefix``, keyed by the rest of their name."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    return {k[len(prefix) :]: state_dict.pop(k) for k in keys}


def _split(tensor: torch.Tensor, cardinality: int, dim: int = 0) -> list[torch.Tensor]:
    if tensor.dim() == 0:  # e.g. BN's num_batches_tracked: shared by every branch
        return [tensor.clone() for _ in range(cardinality)]
    return [t.clone() for t in tensor.chunk(cardinality, dim=dim)]


def _to_grouped(block: dict[str, torch.Tensor], form: str) -> dict[str, torch.Tensor]:
    cardinality = 1 + max(int(k.split(".")[1]) for k in block if k.startswith("branches."))
    grouped = {k: v for k, v in block.items() if k.startswith(("shortcut.", "conv3."))}
    for layer in ("conv1", "conv2"):
        names = {k.split(".", 3)[3] for k in block if k.startswith(f"branches.0.{layer}.")}
        for name in names:
            parts = [block[f"branches.{i}.{layer}.{name}"] for i in range(cardinality)]
            grouped[f"{layer}.{name}"] = parts[0].clone() if parts[0].dim() == 0 else torch.cat(parts)
    if form == "aggregated":
        grouped["conv3.weight"] = torch.cat(
            [block[f"branches.{i}.conv3.weight"] for i in range(cardinality)], dim=1
        )
        for name, value in block.items():
            if name.startswith("aggregate_norm."):
                grouped["conv3.norm." + name[len("aggregate_norm.") :]] = value
    return grouped


def _from_grouped(block: dict[str, torch.Tensor], form: str, cardinality: int) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in block.items() if k.startswith("shortcut.")}
    for layer in ("conv1", "conv2"):
        for name, value in block.items():
            if name.startswith(layer + "."):
                for i, part in enumerate(_split(value, cardinality)):
                    out[f"branches.{i}.{name}"] = part
    for name, value in block.items():
        if not name.startswith("conv3."):
            continue
        if form == "concat":
            out[name] = value
        elif name == "conv3.weight":
            for i, part in enumerate(_split(value, cardinality, dim=1)):
                out[f"branches.{i}.conv3.weight"] = part
        else:
            out["aggregate_norm." + name[len("conv3.norm.") :]] = value
    return out


def convert_block_form(
    state_dict, target_form: str, cardinality: int | None = None
) -> OrderedDict[str, torch.Tensor]:
    """Return a copy of ``state_dict`` with every ResNeXt block rewritten in ``target_form``.

    ``cardinality`` is read from the weights (number of branches, or ``C*d / d`` of the grouped
    3x3); pass it only to check that the checkpoint has the template you expect.
    """
    if target_form not in BLOCK_FORMS:
        raise ValueError(f"target_form must be one of {BLOCK_FORMS}, got {target_form!r}")
    converted = OrderedDict(state_dict)
    blocks = _block_prefixes(state_dict)
    if not blocks:
        raise ValueError("no ResNeXt blocks found in the state dict (no '*.conv2.weight' keys)")
    for prefix, form in blocks.items():
        block = _take(converted, prefix)
        if form != "grouped":
            block = _to_grouped(block, form)
        conv2 = block["conv2.weight"]
        block_cardinality = conv2.shape[0] // conv2.shape[1]
        if cardinality is not None and block_cardinality != cardinality:
            raise ValueError(
                f"{prefix or 'block'}: weights have cardinality {block_cardinality}, expected {cardinality}"
            )
        if target_form != "grouped":
            block = _from_grouped(block, target_form, block_cardinality)
        converted.update({prefix + k: v for k, v in block.items()})
    return converted
