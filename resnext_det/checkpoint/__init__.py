"""Weights: classifier checkpoints (ours, torchvision, timm) -> detectron2 detection weights."""

from .convert import (
    SOURCES,
    WeightsMismatchError,
    check_input_convention,
    check_weights_file_fits,
    check_weights_fit,
    classifier_weights_source,
    convert_checkpoint,
    describe_mismatches,
    infer_template,
    load_classifier_state_dict,
    to_detectron2_state_dict,
    torchvision_to_resnext_names,
)

__all__ = [
    "SOURCES",
    "WeightsMismatchError",
    "check_input_convention",
    "check_weights_file_fits",
    "check_weights_fit",
    "classifier_weights_source",
    "convert_checkpoint",
    "describe_mismatches",
    "infer_template",
    "load_classifier_state_dict",
    "to_detectron2_state_dict",
    "torchvision_to_resnext_names",
]
