"""Seam-free tiled inference, run the fast way on CPU and GPU.

The networks use valid convolutions, so an output pixel depends only on input pixels within the
model's ``radius``. Replicate-padding the image once and running each tile with a halo of
``radius`` pixels therefore gives *exactly* the whole-image result; no blending is needed.

The halo is cut straight out of the uint8 image with clamped indices (which *is* replicate
padding), so no full-size float copy of the image, let alone of the 64-channel feature maps, is
ever held: memory is bounded by the tile size. Tiles of one shape are batched together, across
all the planes given to :func:`restore_planes` (the planes of one image, or many images).

How the tiles are executed (docs/performance.md has the measurements behind each choice):

- **CPU**: tiles are independent, so they run in parallel, each on a single-threaded worker (one
  worker per torch thread), instead of one at a time with every core inside each convolution.
  That removes a thread barrier per layer and, on a shared machine, a core taken by another
  process delays only its own tile rather than every layer of every tile. Images with fewer
  tiles than ``2 * workers`` get smaller tiles (down to 128) so that no core idles.
- **CUDA**: windows are written into pinned host buffers and copied on a copy stream while the
  previous batch computes; results come back asynchronously (two slots, double-buffered). Edge tiles are extended to the full tile shape (more replicate padding,
  cropped afterwards) and batches are always full, so cuDNN autotuning and CUDA graphs
  (:class:`arcnn.acceleration.CudaGraphed`) see one shape per image size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import threading

import numpy as np
import torch

from arcnn.architectures import Network

MIN_CPU_TILE = 128
"""Smallest tile the CPU path splits down to for parallelism (halo overhead ~6% at 128)."""


@dataclass(frozen=True)
class Tile:
    """Output rectangle ``[y0, y1) x [x0, x1)`` of the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def plan_tiles(height: int, width: int, tile: int, stride: int = 1) -> list[Tile]:
    """Cover the image with tiles of side ``tile`` (the last row/column may be smaller).

    ``tile`` is rounded down to a multiple of the model's ``stride`` so that every tile starts on
    the same sub-sampling grid as the whole image (needed for exactness of strided models).
    """
    if tile < stride:
        raise ValueError(f"tile {tile} smaller than the model stride {stride}")
    tile -= tile % stride
    return [
        Tile(y, min(y + tile, height), x, min(x + tile, width))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


def fill_window(dst: np.ndarray, image: np.ndarray, top: int, left: int) -> None:
    """Write ``image[top:top+H, left:left+W]`` into ``dst`` (H x W) with indices clamped to the
    image, i.e. replicate padding, using slices only (the window must overlap the image)."""
    h, w = image.shape
    wh, ww = dst.shape
    y0, y1, x0, x1 = max(top, 0), min(top + wh, h), max(left, 0), min(left + ww, w)
    a, b, c, d = y0 - top, y1 - top, x0 - left, x1 - left
    dst[a:b, c:d] = image[y0:y1, x0:x1]
    dst[:a, c:d] = dst[a, c:d]
    dst[b:, c:d] = dst[b - 1, c:d]
    dst[:, :c] = dst[:, c:c + 1]
    dst[:, d:] = dst[:, d - 1:d]


def window_shape(tile: Tile, radius: int, stride: int = 1) -> tuple[int, int]:
    """Input window for ``tile``: the tile, its halo, and for strided models the extra pixels
    on the far side that make the size one the model can consume (their output is cropped)."""
    th, tw = tile.shape
    return th + 2 * radius + (-th) % stride, tw + 2 * radius + (-tw) % stride


def padded_window(image: np.ndarray, tile: Tile, radius: int, stride: int = 1) -> np.ndarray:
    """The tile plus its halo, replicate-padded at the image border (a copy, same dtype)."""
    window = np.empty(window_shape(tile, radius, stride), dtype=image.dtype)
    fill_window(window, image, tile.y0 - radius, tile.x0 - radius)
    return window


@dataclass(frozen=True)
class _Job:
    """One tile of one plane, and the output size its window is computed at."""

    plane: int
    tile: Tile
    out_shape: tuple[int, int]
    row0: int = 0
    """First image row of the output array the tile is written into (a band's top, or 0)."""


def _batches(jobs: list[_Job], batch_size: int) -> list[list[_Job]]:
    by_shape: dict[tuple[int, int], list[_Job]] = defaultdict(list)
    for job in jobs:
        by_shape[job.out_shape].append(job)
    return [group[i:i + batch_size] for group in by_shape.values() for i in range(0, len(group), batch_size)]


def _fill_batch(dst: np.ndarray, batch: list[_Job], stacks: list[list[np.ndarray]], radius: int) -> None:
    """Windows of ``batch`` into ``dst[:len(batch)]`` (float32, N x C x H x W), scaled to [0, 1]
    exactly as :func:`restore_whole` scales (cast to float32, then divide by 255)."""
    for i, job in enumerate(batch):
        for c, channel in enumerate(stacks[job.plane]):
            fill_window(dst[i, c], channel, job.tile.y0 - radius, job.tile.x0 - radius)
    np.divide(dst[:len(batch)], np.float32(255.0), out=dst[:len(batch)])


def _scatter(outs: list[np.ndarray], batch: list[_Job], results: np.ndarray) -> None:
    for job, result in zip(batch, results):
        t = job.tile
        th, tw = t.shape
        outs[job.plane][:, t.y0 - job.row0:t.y1 - job.row0, t.x0:t.x1] = result[:, :th, :tw]




_POOL_PREFIX = "arcnn-tile"
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _cpu_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, each with one torch (intra-op) thread."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix=_POOL_PREFIX,
                                                 initializer=torch.set_num_threads, initargs=(1,))
        return _POOLS[workers]


def _cpu_tile(shapes: list[tuple[int, int]], tile: int, stride: int, workers: int) -> int:
    """The requested tile, halved (not below :data:`MIN_CPU_TILE`) while there are fewer tiles
    than ``2 * workers`` to share between the workers."""
    def count(t: int) -> int:
        return sum(len(plan_tiles(h, w, t, stride)) for h, w in shapes)
    while workers > 1 and tile // 2 >= MIN_CPU_TILE and count(tile) < 2 * workers:
        tile //= 2
    return tile


def _run_cpu(model: Network, planes: list[list[np.ndarray]], outs: list[np.ndarray], batches: list[list[_Job]],
             dtype: torch.dtype, workers: int) -> None:
    radius, c_in = model.radius, model.in_channels

    def run(batch: list[_Job]) -> None:
        with torch.inference_mode():  # thread-local, so set in the worker too
            wh, ww = window_shape(batch[0].tile, radius, model.stride)
            windows = np.empty((len(batch), c_in, wh, ww), np.float32)
            _fill_batch(windows, batch, planes, radius)
            y = model(torch.from_numpy(windows).to(dtype))
            _scatter(outs, batch, (y.float() * 255.0).numpy())

    nested = threading.current_thread().name.startswith(_POOL_PREFIX)  # waiting on our own pool would deadlock
    if workers <= 1 or len(batches) <= 1 or nested:
        for batch in batches:
            run(batch)
    else:
        for future in [_cpu_pool(workers).submit(run, b) for b in batches]:
            future.result()


class _Slot:
    """One of the two in-flight batches of the CUDA pipeline: pinned input and output buffers,
    the device input, and the events that say when each may be reused."""

    def __init__(self, in_numel: int, out_numel: int, device: torch.device) -> None:
        self.host_in = torch.zeros(in_numel, dtype=torch.float32, pin_memory=True)
        self.host_out = torch.empty(out_numel, dtype=torch.float32, pin_memory=True)
        self.dev_in = torch.zeros(in_numel, dtype=torch.float32, device=device)
        self.copied = torch.cuda.Event()
        self.done = torch.cuda.Event(blocking=True)  # the host sleeps while waiting: cores stay free for decoding
        self.batch: list[_Job] | None = None
        self.out_view: torch.Tensor | None = None

    def collect(self, outs: list[np.ndarray]) -> None:
        """Wait for this slot's batch and write its results into ``outs``."""
        if self.batch is not None:
            self.done.synchronize()
            _scatter(outs, self.batch, self.out_view.numpy())
            self.batch = None


def _run_cuda(model: Network, planes: list[list[np.ndarray]], outs: list[np.ndarray], batches: list[list[_Job]],
              batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
    """Copies run on a private stream; compute and the copy back run on the calling thread's
    current stream, so a model shared between threads (arcnn/jobs/batching.py) stays ordered."""
    if not batches:
        return
    radius, c_in, c_out = model.radius, model.in_channels, model.out_channels
    shapes = {b[0].out_shape for b in batches}
    in_numel = batch_size * c_in * max((h + 2 * radius) * (w + 2 * radius) for h, w in shapes)
    out_numel = batch_size * c_out * max(h * w for h, w in shapes)
    slots = [_Slot(in_numel, out_numel, device) for _ in range(2)]
    compute = torch.cuda.current_stream(device)
    copy_stream = torch.cuda.Stream(device)
    copy_stream.wait_stream(compute)  # the device buffers were zeroed on the compute stream
    for k, batch in enumerate(batches):
        slot = slots[k % 2]
        slot.collect(outs)  # frees this slot: its previous copy-in, compute and copy-out are done
        oh, ow = batch[0].out_shape
        host_in = slot.host_in[:batch_size * c_in * (oh + 2 * radius) * (ow + 2 * radius)].view(
            batch_size, c_in, oh + 2 * radius, ow + 2 * radius)
        _fill_batch(host_in.numpy(), batch, planes, radius)  # overlaps the other slot's compute
        dev_in = slot.dev_in[:host_in.numel()].view(host_in.shape)
        with torch.cuda.stream(copy_stream):
            dev_in.copy_(host_in, non_blocking=True)
            slot.copied.record(copy_stream)
        compute.wait_event(slot.copied)
        y = model(dev_in.to(dtype))  # always the full batch: one shape per image size
        slot.out_view = slot.host_out[:batch_size * c_out * oh * ow].view(batch_size, c_out, oh, ow)
        slot.out_view.copy_(y.float() * 255.0, non_blocking=True)
        slot.done.record(compute)
        slot.batch = batch
    for slot in slots:
        slot.collect(outs)


def _uniform_side(n: int, tile: int, stride: int) -> int:
    """CUDA tile side along a dimension of ``n`` pixels: the tile, or for images smaller than
    it the size rounded up to 32 so that similar sizes share one shape."""
    tile -= tile % stride
    return min(tile, -(-n // 32) * 32)


def auto_tile(device: torch.device | str, model: Network | None = None) -> int:
    """The tile side used when none is given (0). A GPU wants big tiles to be busy: 512. On a
    CPU, for a full-resolution network 384 runs as fast per pixel as 512 (the halo's extra work
    is paid back in cache) with half the feature maps' memory per worker; a half-resolution one
    (stride 2: Fast AR-CNN, the chroma networks) holds a quarter of the feature maps per tile
    and runs faster at 512, so it keeps 512 (docs/performance.md)."""
    if torch.device(device).type == "cuda" or (model is not None and model.stride > 1):
        return 512
    return 384


def auto_batch_size(device: torch.device | str) -> int:
    """Tiles per forward pass when none is given (0). A GPU needs several to be busy; a CPU
    worker thread runs as fast on one tile at a time, and each extra tile in a batch is its
    feature maps' worth of memory (docs/performance.md)."""
    return 4 if torch.device(device).type == "cuda" else 1


@torch.inference_mode()
def restore_planes(model: Network, planes: list, tile: int = 0, batch_size: int = 0,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                   workers: int | None = None) -> list[np.ndarray]:
    """Run ``model`` over several planes (H x W, uint8 or float in [0, 255]), batching tiles
    of equal shape across them. Returns float32 planes in [0, 255] (unclipped).

    A multi-channel model (:class:`arcnn.architectures.ChromaNet`) takes stacks of C planes
    instead (a C x H x W array or a list of H x W planes, which may be strided or read-only
    broadcast views: constant condition planes cost no memory that way) and gives
    ``out_channels`` x H x W.

    ``workers`` (CPU only) is the number of tiles run at once, each single-threaded; it defaults
    to the calling thread's torch thread count, so ``torch.set_num_threads`` still governs.
    ``tile`` and ``batch_size`` 0 mean :func:`auto_tile` and :func:`auto_batch_size`.
    """
    device = torch.device(device)
    tile, batch_size = tile or auto_tile(device, model), batch_size or auto_batch_size(device)
    stride = model.stride
    c_in, c_out = model.in_channels, model.out_channels
    flat = [isinstance(p, np.ndarray) and p.ndim == 2 for p in planes]
    stacks = [[p] if f else list(p) for p, f in zip(planes, flat)]
    if any(len(s) != c_in for s in stacks):
        raise ValueError(f"the model takes {c_in} channel(s), got {[len(s) for s in stacks]}")
    shapes = [s[0].shape for s in stacks]
    outs = [np.empty((c_out, *shape), dtype=np.float32) for shape in shapes]
    if device.type == "cuda":
        jobs = []
        for i, (h, w) in enumerate(shapes):
            side = (_uniform_side(h, tile, stride), _uniform_side(w, tile, stride))
            jobs += [_Job(i, t, side) for t in plan_tiles(h, w, tile, stride)]
        _run_cuda(model, stacks, outs, _batches(jobs, batch_size), batch_size, device, dtype)
    else:
        workers = torch.get_num_threads() if workers is None else workers
        tile = _cpu_tile(shapes, tile, stride, workers)
        jobs = [_Job(i, t, t.shape) for i, shape in enumerate(shapes) for t in plan_tiles(*shape, tile, stride)]
        _run_cpu(model, stacks, outs, _batches(jobs, batch_size), dtype, workers)
    return [o[0] if f else o for o, f in zip(outs, flat)]


def restore_plane(model: Network, plane: np.ndarray, tile: int = 0, batch_size: int = 0,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                  workers: int | None = None) -> np.ndarray:
    """Run ``model`` over one image plane (H x W, uint8 or float in [0, 255]) in tiles.

    Returns a float32 plane in [0, 255] (unclipped, so callers choose how to round). The model
    sees values scaled to [0, 1], as in training.
    """
    return restore_planes(model, [plane], tile, batch_size, device, dtype, workers=workers)[0]


@torch.inference_mode()
def restore_whole(model: Network, plane: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Reference whole-image inference: replicate-pad once by the radius, one forward pass.

    What a user would write; the tests hold :func:`restore_plane` to it exactly.
    """
    radius, stride = model.radius, model.stride
    stack = plane if plane.ndim == 3 else plane[None]
    h, w = stack.shape[1:]
    pad = ((0, 0), (radius, radius + (-h) % stride), (radius, radius + (-w) % stride))
    padded = np.pad(stack.astype(np.float32) / 255.0, pad, mode="edge")
    y = model(torch.from_numpy(padded)[None].to(device)).float().mul_(255.0).cpu().numpy()[0, :, :h, :w]
    return y if plane.ndim == 3 else y[0]


@torch.inference_mode()
def restore_in_place(model: Network, stack: list, targets: list[np.ndarray], tile: int = 0,
                     batch_size: int = 0, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32, *, workers: int | None = None,
                     convert: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """:func:`restore_planes` for one stack, writing output channel ``c`` into ``targets[c]``
    (H x W), which may be planes of ``stack`` itself: Cb/Cr restored over themselves.
    ``convert`` maps each float32 output band before it is written (e.g. rounding to uint8, so
    that a grey image is restored over its own uint8 plane).

    Why: an image-sized output array beside the input planes is most of a restore's memory. On
    the CPU the tiles run one band (a row of tiles) at a time, and a band's output is written
    back only once the band below it has been computed, so two bands of output exist at once
    instead of an image's worth. Exact, as tiling is: a band's halo reaches into the band above
    (not yet written back) and never further, since the radius is smaller than a band. On CUDA
    (or with a radius as large as a tile) the whole output is computed first, then copied.
    """
    device = torch.device(device)
    tile, batch_size = tile or auto_tile(device, model), batch_size or auto_batch_size(device)
    radius, stride = model.radius, model.stride
    shape = stack[0].shape
    workers = torch.get_num_threads() if workers is None else workers
    tile = _cpu_tile([shape], tile, stride, workers) if device.type == "cpu" else tile
    if device.type != "cpu" or radius >= tile - tile % stride:
        _write_band(targets, 0, restore_planes(model, [stack], tile, batch_size, device, dtype, workers=workers)[0],
                    convert)
        return
    c_in, c_out = model.in_channels, model.out_channels
    if len(stack) != c_in or len(targets) != c_out:
        raise ValueError(f"the model takes {c_in} channel(s) and gives {c_out}, got {len(stack)} and {len(targets)}")
    bands: dict[int, list[Tile]] = defaultdict(list)
    for t in plan_tiles(*shape, tile, stride):
        bands[t.y0].append(t)
    pending: tuple[int, np.ndarray] | None = None
    for y0, band in bands.items():
        out = np.empty((c_out, band[0].y1 - y0, shape[1]), dtype=np.float32)
        jobs = [_Job(0, t, t.shape, row0=y0) for t in band]
        _run_cpu(model, [stack], [out], _batches(jobs, batch_size), dtype, workers)
        if pending is not None:
            _write_band(targets, *pending, convert)
        pending = (y0, out)
    if pending is not None:
        _write_band(targets, *pending, convert)


def _write_band(targets: list[np.ndarray], top: int, out: np.ndarray,
                convert: Callable[[np.ndarray], np.ndarray] | None) -> None:
    for target, channel in zip(targets, out):
        target[top:top + channel.shape[0]] = convert(channel) if convert else channel
