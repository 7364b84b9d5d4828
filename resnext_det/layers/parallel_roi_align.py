"""RoIAlign whose CPU forward and backward use every thread, not one.

torchvision's CPU RoIAlign kernels run on a single thread. In a C4 training iteration on two
cores the backward alone took about 10% of the time (0.69 s of 7.1 s, 64 RoIs of 1024 x 14 x 14),
and the machine's second core sat idle. Each RoI reads (forward) and writes the gradient of
(backward) only its own image, so the RoIs can be cut into contiguous chunks, one per thread:

* forward: each chunk's pooled features are computed by torchvision's own kernel on its own
  thread and concatenated; identical to the serial result;
* backward: each chunk's gradient is computed for just the images its RoIs fall in (detectron2
  orders the RoIs by image, so that is usually one image) and added into the input's gradient in
  chunk order, so the result does not depend on thread timing. Where two chunks share an image
  the two partial sums are added in another order than the serial kernel's: float rounding only.

The kernels release the GIL, so a small thread pool is enough. Anything else (GPU tensors, other
dtypes, quantized input, one thread, or fewer than two RoIs) runs detectron2's ``ROIAlign``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from detectron2.layers import ROIAlign
from torch.autograd.function import once_differentiable

__all__ = ["ParallelROIAlign"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _thread_pool(size: int) -> ThreadPoolExecutor:
    """One shared pool, resized to the current ``torch.get_num_threads()``."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(size, thread_name_prefix="roi_align"), size
        return _pool


def _forget_pool_after_fork() -> None:
    # a forked child (a DataLoader worker) has none of the parent's threads: never reuse the pool
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _chunks(num_rois: int, num_threads: int) -> list[slice]:
    bounds = torch.linspace(0, num_rois, min(num_threads, num_rois) + 1).round().long().tolist()
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]


class _ChunkedRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        height, width = output_size
        features = features.contiguous()  # once here, not once per thread inside the kernel
        chunks = _chunks(rois.shape[0], torch.get_num_threads())
        pool = _thread_pool(len(chunks))

        def pool_chunk(chunk: slice) -> torch.Tensor:
            return torch.ops.torchvision.roi_align(
                features, rois[chunk], spatial_scale, height, width, sampling_ratio, aligned
            )

        pooled = torch.cat(list(pool.map(pool_chunk, chunks)))
        ctx.save_for_backward(rois)
        ctx.features_shape = features.shape
        ctx.params = (output_size, spatial_scale, sampling_ratio, aligned, chunks)
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled):
        (rois,) = ctx.saved_tensors
        (height, width), spatial_scale, sampling_ratio, aligned, chunks = ctx.params
        _, channels, feature_height, feature_width = ctx.features_shape
        grad_pooled = grad_pooled.contiguous()

        def chunk_gradient(chunk: slice) -> tuple[int, torch.Tensor]:
            chunk_rois = rois[chunk]
            first, last = int(chunk_rois[:, 0].min()), int(chunk_rois[:, 0].max())
            local_rois = chunk_rois.clone()
            local_rois[:, 0] -= first  # only the images this chunk touches
            grad = torch.ops.torchvision._roi_align_backward(
                grad_pooled[chunk], local_rois, spatial_scale, height, width, last - first + 1,
                channels, feature_height, feature_width, sampling_ratio, aligned,
            )  # fmt: skip
            return first, grad

        grad_features = grad_pooled.new_zeros(ctx.features_shape)
        for first, grad in _thread_pool(len(chunks)).map(chunk_gradient, chunks):  # results in chunk order
            grad_features[first : first + grad.shape[0]] += grad
        return grad_features, None, None, None, None, None


class ParallelROIAlign(ROIAlign):
    """detectron2's ``ROIAlign`` (same arguments and results) that splits the RoIs over
    ``torch.get_num_threads()`` threads on the CPU; see the module docstring."""

    @classmethod
    def from_roi_align(cls, module: ROIAlign) -> ParallelROIAlign:
        return cls(module.output_size, module.spatial_scale, module.sampling_ratio, module.aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        serial = (
            input.device.type != "cpu"
            or input.dtype != torch.float32
            or input.is_quantized
            or torch.get_num_threads() < 2
            or rois.shape[0] < 2
        )
        if serial:
            return super().forward(input, rois)
        assert rois.dim() == 2 and rois.size(1) == 5
        output_size = self.output_size
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        return _ChunkedRoIAlign.apply(
            input, rois.to(dtype=input.dtype), tuple(output_size), self.spatial_scale,
            self.sampling_ratio, self.aligned,
        )  # fmt: skip
