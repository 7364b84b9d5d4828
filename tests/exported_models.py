"""What the tests of exported models share: the image sizes every backend resizes alike, and the
comparison of an exported model's detections with the eager graph's."""

from __future__ import annotations

import numpy as np
import torch

# 128x160 is upsampled exactly 2x and 256x300 kept as it is: sizes where every backend's resize
# gives the same pixels. 200x150 is not: ONNX Runtime's antialiased uint8 Resize rounds about 1%
# of the pixels one level differently from torch's (and PIL's), which moves boxes by ~1e-2 px.
EXACT_SIZES = [(128, 160), (256, 300)]
INEXACT_SIZE = (200, 150)


def eager(graph, image: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in graph(torch.from_numpy(image))]


def assert_same_detections(got, expected, box_tolerance: float) -> None:
    """The same classes in the same order, scores to 1e-4, boxes to ``box_tolerance`` px; more
    than 10 detections, so that the comparison is a real one."""
    assert len(expected[0]) > 10
    assert np.array_equal(got[2], expected[2])
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=box_tolerance)
    np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=1e-4)
