"""RoIAlign whose CPU forward uses every thread and whose backward is two matrix products.

torchvision's CPU RoIAlign kernels run on a single thread, and its backward recomputes every
bilinear weight for every channel and scatters one value at a time. In the demo's Fast R-CNN
training iteration (64 RoIs of 128 x 14 x 14, two threads) that backward took 34 ms of 195, more
than any convolution. So:

* forward: the RoIs are cut into contiguous chunks, one per thread, and each chunk's pooled
  features are computed by torchvision's own kernel on its thread and written into place:
  identical to the serial result (the kernels release the GIL, so a small thread pool is enough);
* backward: a pooled value is a mean of bilinear samples, and both the sample grid and the
  bilinear weights are a product of a y part and an x part, so RoI r pools ``Y_r @ F @ X_r^T``
  from each channel F of its image, with ``Y_r`` (pooled height x H) and ``X_r`` (pooled width x W)
  built from torchvision's geometry and edge rules. The gradient of an image is then the sum of
  ``Y_r^T @ G_r @ X_r`` over its RoIs: two batched matrix products on every thread (7.6 ms instead
  of 34 in that iteration), in a fixed order, so the result does not depend on timing. It equals
  torchvision's within float rounding (tested on every edge rule);
* layout: the pooled features and the gradient come back in the map's layout, channels_last for
  a channels_last model (detection trains so on a CPU: ``SOLVER.MEMORY_FORMAT``), and the
  backward works channels-last throughout. Pooled in NCHW, the res5 head converted them twice
  forward and once backward: the demo's Fast R-CNN iteration took 0.19 s instead of 0.22
  (measured 2026-12-05, AVX-512, 2 threads), and the demo's numbers stayed the same to every
  digit (SEED 0 and 1).

On one thread the forward is torchvision's kernel alone, and the backward the same two products:
0.29 s per demo Fast R-CNN iteration instead of 0.41 with torchvision's backward (one thread, as
each of the test suite's two workers runs). Anything else (GPU tensors, other dtypes, quantized
input, or fewer than two RoIs) runs detectron2's ``ROIAlign``.
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
            _pool = ThreadPoolExecutor(size, thread_name_prefix="roi_align", initializer=_one_thread)
            _pool_size = size
        return _pool


def _one_thread() -> None:
    """A pool thread's own torch ops (the kernel zero-fills its output with ``at::parallel_for``)
    run on that thread alone. Otherwise each pool thread that runs a parallel op gets its own
    OpenMP team; GNU OpenMP then manages more threads than there are cores and, for the rest of
    the process, lets every idle worker sleep instead of spinning between parallel regions: the
    main thread's many small ops each wait for a wake-up (the demo's pretraining ran 2x slower
    after one such forward in the same process; measured 2026-12-05)."""
    torch.set_num_threads(1)


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
        memory_format = _memory_format(features)
        features = features.contiguous()  # once here, not once per thread inside the kernel
        chunks = _chunks(rois.shape[0], torch.get_num_threads())

        # The pooled features in the features' layout: a channels_last head would otherwise
        # convert them once per convolution that reads them (the first res5 block's conv1 and
        # shortcut) and send back a channels_last gradient to convert again. Each thread writes
        # its chunk into place, converting it there.
        pooled = torch.empty(
            (rois.shape[0], features.shape[1], height, width),
            dtype=features.dtype,
            device=features.device,
            memory_format=memory_format,
        )

        def pool_chunk(chunk: slice) -> None:
            with torch.no_grad():  # grad mode is per thread: off here as on the calling thread
                chunk_pooled = torch.ops.torchvision.roi_align(
                    features, rois[chunk], spatial_scale, height, width, sampling_ratio, aligned
                )
                pooled[chunk].copy_(chunk_pooled)

        if len(chunks) == 1:
            pool_chunk(chunks[0])  # one thread: here, without a pool
        else:
            list(_thread_pool(len(chunks)).map(pool_chunk, chunks))
        ctx.save_for_backward(rois)
        ctx.features_shape = features.shape
        ctx.memory_format = memory_format
        ctx.params = (output_size, spatial_scale, sampling_ratio, aligned)
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pooled):
        (rois,) = ctx.saved_tensors
        output_size, spatial_scale, sampling_ratio, aligned = ctx.params
        num_images, channels, height, width = ctx.features_shape
        rows, columns = _sampling_matrices(
            rois, output_size, (height, width), spatial_scale, sampling_ratio, aligned
        )
        # channels last throughout: (R, Ph, Pw, C) in, (N, H, W, C) out, so that both products
        # read and write whole rows, and no permuted copy is needed between them
        grad_pooled = grad_pooled.permute(0, 2, 3, 1).contiguous()
        grad_features = grad_pooled.new_zeros(num_images, height, width, channels)
        per_product = _rois_per_product(channels, output_size[0], width)
        for image, rois_of_image in _rois_by_image(rois[:, 0].long()):
            for chunk in _split(rois_of_image, per_product):
                grad_features[image] += _spread_back(grad_pooled[chunk], rows[chunk], columns[chunk])
        grad_features = grad_features.permute(0, 3, 1, 2).contiguous(memory_format=ctx.memory_format)
        return grad_features, None, None, None, None, None


def _memory_format(features: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels_last map (not one that is both, as a map of one channel is)."""
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _rois_by_image(batch_index: torch.Tensor) -> list[tuple[int, slice | torch.Tensor]]:
    """Each image's RoIs: a slice where they are consecutive (detectron2 concatenates the RoIs
    image by image, and a slice selects without a copy), else their indices."""
    images, counts = torch.unique_consecutive(batch_index, return_counts=True)
    distinct = batch_index.unique()
    if images.numel() == distinct.numel():
        stops = counts.cumsum(0).tolist()
        starts = [0, *stops[:-1]]
        return [(image, slice(a, b)) for image, a, b in zip(images.tolist(), starts, stops, strict=True)]
    return [(image, torch.nonzero(batch_index == image, as_tuple=True)[0]) for image in distinct.tolist()]


def _split(rois: slice | torch.Tensor, size: int) -> list[slice | torch.Tensor]:
    if isinstance(rois, slice):
        return [slice(start, min(start + size, rois.stop)) for start in range(rois.start, rois.stop, size)]
    return list(rois.split(size))


def _rois_per_product(channels: int, pooled_height: int, width: int, max_floats: int = 1 << 24) -> int:
    """How many RoIs one product handles: bounds its (RoIs, pooled height, W, C) intermediate to
    64 MB, whatever the image and channel count (COCO's res4 at 800 px: about 13 RoIs)."""
    return max(1, max_floats // (channels * pooled_height * width))


def _spread_back(grad_pooled: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The gradient that ``grad_pooled`` (R, Ph, Pw, C) of R RoIs of one image sends to that image's
    features (H, W, C): the sum over RoIs of ``rows[r]^T @ grad[r] @ columns[r]``, as two products."""
    num_rois, pooled_height, _, channels = grad_pooled.shape
    height, width = rows.shape[-1], columns.shape[-1]
    along_x = torch.matmul(columns.transpose(1, 2)[:, None], grad_pooled)  # (R, Ph, W, C)
    grad = rows.reshape(num_rois * pooled_height, height).t() @ along_x.reshape(-1, width * channels)
    return grad.view(height, width, channels)


def _sampling_matrices(rois, output_size, feature_size, spatial_scale, sampling_ratio, aligned):
    """RoIAlign's bilinear sampling of each RoI as two matrices, one per axis.

    A pooled value is the mean over a grid of sample points of a bilinear interpolation, and both
    the grid and the interpolation weights are products of a y part and an x part, so RoI r pools
    ``rows[r] @ F @ columns[r]^T`` from a feature map F (H, W): ``rows`` (R, Ph, H) and
    ``columns`` (R, Pw, W) hold, for each output row (column), the weight each feature row (column)
    gets. Geometry and edge rules are torchvision's CPU kernel's (``roi_align_kernel.cpp``):
    ``aligned`` shifts by half a pixel, ``sampling_ratio`` 0 means ceil(RoI size / output size)
    samples per bin, a sample beyond one pixel outside the map counts zero, one at the far edge is
    clamped onto it.
    """
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:] * spatial_scale - offset
    matrices = []
    for axis, (pooled, size) in enumerate(zip(output_size, feature_size, strict=True)):
        start, end = boxes[:, 1 - axis], boxes[:, 3 - axis]  # axis 0 (rows) is y: columns 1 and 3
        extent = end - start
        if not aligned:
            extent = extent.clamp(min=1.0)
        bin_size = extent / pooled
        grid = (
            torch.full_like(extent, sampling_ratio) if sampling_ratio > 0 else torch.ceil(extent / pooled)
        ).long()
        samples = torch.arange(max(int(grid.max()), 1), dtype=rois.dtype, device=rois.device)
        used = samples[None, :] < grid[:, None]  # (R, S): grids differ from RoI to RoI
        per_sample = bin_size / grid.clamp(min=1)
        bins = torch.arange(pooled, dtype=rois.dtype, device=rois.device)
        position = (
            start[:, None, None]
            + bins[None, :, None] * bin_size[:, None, None]
            + (samples[None, None, :] + 0.5) * per_sample[:, None, None]
        )  # (R, P, S)
        inside = used[:, None, :] & (position >= -1.0) & (position <= size)
        position = position.clamp(min=0.0)
        low = position.floor().long()
        at_edge = low >= size - 1
        low = torch.where(at_edge, size - 1, low)
        high = torch.where(at_edge, size - 1, low + 1)
        fraction = torch.where(at_edge, 0.0, position - low)
        weight = inside / grid.clamp(min=1)[:, None, None]
        matrix = rois.new_zeros(rois.shape[0], pooled, size)
        matrix.scatter_add_(2, low, (1 - fraction) * weight)
        matrix.scatter_add_(2, high, fraction * weight)
        matrices.append(matrix)
    return matrices


class ParallelROIAlign(ROIAlign):
    """detectron2's ``ROIAlign`` (same arguments and results) that splits the RoIs over
    ``torch.get_num_threads()`` threads on the CPU and backpropagates by matrix products; see the
    module docstring."""

    @classmethod
    def from_roi_align(cls, module: ROIAlign) -> ParallelROIAlign:
        return cls(module.output_size, module.spatial_scale, module.sampling_ratio, module.aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        serial = (
            input.device.type != "cpu"
            or input.dtype != torch.float32
            or input.is_quantized
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
