"""Inference fast paths: the same network, rebuilt so that the hardware runs it near its floor.

:func:`prepare` turns a trained :class:`~arcnn.architectures.ConvNet` or
:class:`~arcnn.architectures.FastARCNN` into a :class:`FastNet`: a drop-in module with the same
contract (a float32 N x 1 x H x W tile in [0, 1], replicate-padded by ``radius``, in; the float32
restored centre out), so :mod:`arcnn.tiling` runs it exactly like the original. What changes:

- **channels-last** weights and activations: oneDNN (CPU) and cuDNN (GPU) pick their fastest
  convolution kernels for NHWC; measured in docs/performance.md.
- **Fast AR-CNN's strided deconvolution becomes a sub-pixel convolution** (a 5x5 convolution to
  the 4 phases of the 2x upsampling, then pixel shuffle). It is the same sum of the same products;
  PyTorch's CPU transposed convolution is slow enough to dominate Fast AR-CNN's time.
- **thin output layers are widened**: a convolution to 1 (AR-CNN) or 4 (Fast AR-CNN's phases)
  channels costs oneDNN as much as one to 16 (it vectorises over output channels), so
  :class:`WideHead` computes 16 / C neighbouring output columns as channels of one convolution
  with horizontal stride 16 / C (the kernel shifted by one column per channel, zeros elsewhere):
  the same products, several times faster for that layer (docs/performance.md).
- **reduced precision** (``bf16`` on CPUs with AVX512-BF16/AMX and on GPUs, ``fp16`` on GPUs):
  the input is fed as pixel values 0..255 (integers, exact in bf16/fp16, unlike k/255) with the
  first layer's weights divided by 255 to compensate; the hidden layers run in reduced precision
  with float32 accumulation; the last layer runs in float32 whenever its output is the image
  itself rather than a correction to it, and the residual add is always float32. docs/performance.md
  has the measured PSNR cost and the bar it is held to.
- **CUDA graphs** (optional, :class:`CudaGraphed`): for fixed tile shapes the whole forward is
  replayed as one graph, removing per-layer launch overhead.

Nothing here changes *which* input pixels an output depends on, so tiled inference of a FastNet
equals whole-image inference of the same FastNet (tests/test_performance_paths.py); against the
original float32 module a float32 FastNet differs only by summation order (~1e-6).
"""

from __future__ import annotations

import copy
import threading
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from arcnn.architectures import ChromaNet, ConvNet, FastARCNN, Network

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Compute precisions by name."""


def _cpu_identity(cpuinfo: str | None) -> tuple[str, set[str]] | None:
    """The vendor and CPU flags of the first processor in /proc/cpuinfo (or the given text);
    None when it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    vendor, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return vendor, flags


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (Intel Sapphire Rapids and later).

    Read from the kernel's CPU flags (``amx_bf16``); elsewhere, torch's own probe if it has one.
    ``cpuinfo`` is the text of /proc/cpuinfo, for tests.
    """
    identity = _cpu_identity(cpuinfo)
    return _torch_amx_probe() if identity is None else "amx_bf16" in identity[1]


def _torch_amx_probe() -> bool:
    """torch's own AMX probe, for when /proc/cpuinfo cannot be read (False if torch has none)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU executes bf16 dot products natively (AVX512-BF16 or AMX); without them
    oneDNN emulates bf16, so the benchmarks do not measure it there."""
    identity = _cpu_identity(cpuinfo)
    return identity is not None and bool({"avx512_bf16", "amx_bf16"} & identity[1])


def cpu_runs_bf16_fast(cpuinfo: str | None = None) -> bool:
    """Whether bf16 convolutions run clearly faster than float32 on this CPU.

    Measured per machine (docs/performance.md, ``python -m bench.per_core``): AMX (Intel
    Sapphire Rapids and later) 4.4x float32; AVX512-BF16 on AMD (Zen 4 and later, which executes
    bf16 dot products at full width) 2.1-2.2x on two machines; AVX512-BF16 on an Intel CPU without
    AMX 0.57x; no bf16 instructions at all, emulated and slower. So: AMX, or AMD with AVX512-BF16.
    """
    identity = _cpu_identity(cpuinfo)
    if identity is None:
        return _torch_amx_probe()
    vendor, flags = identity
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


@lru_cache(maxsize=None)
def default_precision(device: torch.device | str) -> str:
    """``auto`` precision for a device: fp16 on CUDA, bf16 on CPUs where it runs fast
    (:func:`cpu_runs_bf16_fast`), fp32 on other CPUs.

    Where bf16 is fast it restores a 12 MP colour JPEG in about half the float32 time or less,
    for a PSNR cost far below what anyone can see (docs/performance.md measures both, per bundled
    model); where it is not, it would cost time, so fp32 stays the default there.
    """
    if torch.device(device).type == "cuda":
        return "fp16"
    return "bf16" if cpu_runs_bf16_fast() else "fp32"


def _conv_copy(conv: nn.Module, dtype: torch.dtype, channels_last: bool, scale: float = 1.0) -> nn.Module:
    layer = copy.deepcopy(conv)
    if scale != 1.0:
        with torch.no_grad():
            layer.weight.mul_(scale)
    layer = layer.to(dtype)
    return layer.to(memory_format=torch.channels_last) if channels_last else layer


def subpixel_from_deconv(deconv: nn.ConvTranspose2d) -> nn.Conv2d:
    """The 5x5 convolution to 4 phase channels equal to a 9x9 stride-2 transposed convolution.

    For output ``o = 2q + p`` the transposed convolution sums ``in[q - j] * w[2j + p]``; as a
    valid correlation that is kernel ``g_p[t] = w[8 - 2t + p]`` (zero past the kernel) and the
    pixel-shuffled result starts at transposed-convolution output 8 (the first complete one).
    """
    if deconv.stride != (2, 2) or deconv.kernel_size != (9, 9) or deconv.out_channels != 1:
        raise ValueError("expected Fast AR-CNN's 9x9 stride-2 single-channel deconvolution")
    w = deconv.weight.detach()  # (in, 1, 9, 9)
    padded = F.pad(w, (0, 1, 0, 1))  # index 9 reads zero
    taps = torch.tensor([8 - 2 * t for t in range(5)])
    phases = []
    for py in (0, 1):
        for px in (0, 1):
            phases.append(padded[:, 0][:, taps + py][:, :, taps + px])
    conv = nn.Conv2d(deconv.in_channels, 4, 5)
    with torch.no_grad():
        conv.weight.copy_(torch.stack(phases))
        conv.bias.copy_(deconv.bias.detach().expand(4))
    return conv


class WideHead(nn.Module):
    """A valid convolution with few output channels, computed ``s = lanes // out_channels``
    output columns at a time: channel ``dx * C + o`` of a stride-(1, s) convolution with kernel
    width ``k + s - 1`` holds output ``o`` at column ``s * b + dx`` (its kernel is the original
    one shifted right by ``dx``). Inputs whose output width is not a multiple of ``s`` are
    zero-padded on the right; those extra outputs are cropped. Inputs of another precision are
    converted to the head's in the same copy.
    """

    def __init__(self, conv: nn.Conv2d, lanes: int = 16) -> None:
        super().__init__()
        co, ci, kh, kw = conv.weight.shape
        if conv.stride != (1, 1) or conv.padding != (0, 0) or lanes % co:
            raise ValueError("WideHead needs a valid, unit-stride convolution with out_channels dividing lanes")
        self.s, self.co, self.kw = lanes // co, co, kw
        wide = torch.zeros(self.s * co, ci, kh, kw + self.s - 1, dtype=conv.weight.dtype)
        for dx in range(self.s):
            wide[dx * co:(dx + 1) * co, :, :, dx:dx + kw] = conv.weight.detach()
        self.conv = nn.Conv2d(ci, self.s * co, (kh, kw + self.s - 1), stride=(1, self.s))
        with torch.no_grad():
            self.conv.weight.copy_(wide)
            self.conv.bias.copy_(conv.bias.detach().repeat(self.s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1] - self.kw + 1
        extra, dtype = -width % self.s, self.conv.weight.dtype
        if extra or x.dtype != dtype:
            # convert to the head's precision and pad in one copy: after bf16 hidden layers this
            # is the widest feature map, and converting then padding (two copies and a fill) was
            # a third of Fast AR-CNN's bf16 time per tile
            n, c, h, w = x.shape
            layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            padded = torch.empty((n, c, h, w + extra), dtype=dtype, device=x.device, memory_format=layout)
            padded[..., :w].copy_(x)
            padded[..., w:].zero_()
            x = padded
        y = self.conv(x)
        n, _, h, b = y.shape
        y = y.reshape(n, self.s, self.co, h, b).permute(0, 2, 3, 4, 1).reshape(n, self.co, h, b * self.s)
        return y[..., :width]


class FastNet(Network):
    """A prepared network: hidden layers in ``dtype`` (channels-last), output layer, residual.

    ``layers`` are the hidden convolutions (ReLU after each); ``head`` maps to the output and
    ``shuffle`` (Fast AR-CNN, the chroma network) is its pixel-shuffle factor; ``crop`` trims the
    head's output to the tile (Fast AR-CNN's sub-pixel head produces a few extra pixels at its
    far sides). ``unshuffle`` (the chroma network) is a space-to-depth before the first layer.
    """

    def __init__(self, source: nn.Module, layers: list[nn.Module], head: nn.Module, *, dtype: torch.dtype,
                 head_dtype: torch.dtype, channels_last: bool, shuffle: int = 1, crop: int = 0,
                 unshuffle: int = 1) -> None:
        super().__init__()
        self.radius, self.stride = source.radius, source.stride
        self.in_channels, self.out_channels = source.in_channels, source.out_channels
        # the input channels a residual output is added to: the chroma network corrects Cb, Cr
        self.residual_from = 1 if isinstance(source, ChromaNet) else 0
        self.unshuffle = unshuffle
        self.macs_per_pixel = source.macs_per_pixel
        self.residual = source.residual
        self.layers = nn.ModuleList(layers)
        self.head = head
        self.dtype, self.head_dtype = dtype, head_dtype
        self.channels_last = channels_last
        self.shuffle, self.crop = shuffle, crop
        self.input_scale = 1.0 if dtype == torch.float32 else 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] - 2 * self.radius, x.shape[-1] - 2 * self.radius
        y = x * self.input_scale if self.input_scale != 1.0 else x
        if self.unshuffle > 1:
            y = F.pixel_unshuffle(y, self.unshuffle)
        y = y.to(self.dtype, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        for layer in self.layers:
            y = F.relu(layer(y), inplace=True)
        # a WideHead converts to its precision as it pads: one copy of the widest feature map
        y = self.head(y if isinstance(self.head, WideHead) else y.to(self.head_dtype)).float()
        if self.shuffle > 1:
            y = F.pixel_shuffle(y.contiguous(), self.shuffle)
        y = y[..., self.crop:self.crop + h, self.crop:self.crop + w]
        if y.shape[-2] != h or y.shape[-1] != w:
            raise RuntimeError(f"input too small for this model (radius {self.radius})")
        if self.residual:
            r, c = self.radius, self.residual_from
            y = y + x[:, c:c + self.out_channels, r:r + h, r:r + w]
        return y.contiguous()


def prepare(model: nn.Module, device: torch.device | str = "cpu", precision: str = "fp32",
            channels_last: bool = True) -> FastNet:
    """A :class:`FastNet` equivalent to ``model`` on ``device`` (``model`` is left untouched).

    The output layer stays float32 unless the network is residual and runs on CUDA (then it only
    predicts a small correction, whose reduced-precision rounding is far below one grey level).
    On CPU it is always float32: oneDNN's AMX bf16 kernel for the strided ``WideHead`` convolution
    returned garbage (NaN, 1e35) for narrow tiles on a Xeon with AMX (tests/test_performance_paths.py
    caught it), and the head is <1% of AR-CNN's multiply-adds.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    dtype = PRECISIONS[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 is for GPUs; on CPU use bf16 (fast only with AVX512-BF16/AMX) or fp32")
    head_dtype = dtype if model.residual and device.type == "cuda" else torch.float32
    scale = 1.0 if dtype == torch.float32 else 1.0 / 255.0
    if isinstance(model, (ConvNet, ChromaNet)):
        # the hidden convolutions as they are; the input scale folded into the first
        *hidden, last = model.layers
        layers = [_conv_copy(c, dtype, channels_last, scale if i == 0 else 1.0) for i, c in enumerate(hidden)]
        if isinstance(model, ChromaNet):  # space-to-depth in, depth-to-space out, its head as it is
            head, options = last, {"shuffle": 2, "unshuffle": 2}
        else:
            head, options = WideHead(last), {}
    elif isinstance(model, FastARCNN):
        offset = model.radius - 6 - (model.m - 7)  # where FastARCNN.forward crops its deconvolution
        if offset < 8:
            raise ValueError("Fast AR-CNN with enhancement kernel > 9 is not supported by the fast path")
        layers = [_conv_copy(model.extract, dtype, channels_last, scale),
                  *(_conv_copy(c, dtype, channels_last) for c in (model.shrink, model.enhance, model.expand))]
        head, options = WideHead(subpixel_from_deconv(model.deconv)), {"shuffle": 2, "crop": offset - 8}
    else:
        raise TypeError(f"no fast path for {type(model).__name__}")
    net = FastNet(model, layers, _conv_copy(head, head_dtype, channels_last), dtype=dtype, head_dtype=head_dtype,
                  channels_last=channels_last, **options)
    return net.to(device).eval()


class CudaGraphed(Network):
    """Replays ``net`` as one CUDA graph per input shape (captured on first use).

    A graph reads and writes fixed ("static") buffers, so each call copies its input in, replays,
    and clones the output out, all under a lock and ordered after the previous call's clone (an
    event), which keeps calls from several threads or streams (arcnn/jobs/batching.py) from
    overwriting each other's buffers. Shapes should repeat (uniform tiles, full batches, as
    :func:`arcnn.tiling.restore_planes` sends on CUDA), otherwise every new shape pays a capture.
    """

    def __init__(self, net: nn.Module, max_graphs: int = 8) -> None:
        super().__init__()
        self.net = net
        self.radius, self.stride = net.radius, net.stride
        self.in_channels, self.out_channels = net.in_channels, net.out_channels
        self.macs_per_pixel = net.macs_per_pixel
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._last: torch.cuda.Event | None = None

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN autotuning and allocator pools settle before capture
                self.net(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.net(static_in)
        return graph, static_in, static_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        with self._lock:
            stream = torch.cuda.current_stream(x.device)
            if self._last is not None:
                stream.wait_event(self._last)
            if key not in self._graphs:
                if len(self._graphs) >= self.max_graphs:
                    self._graphs.pop(next(iter(self._graphs)))
                self._graphs[key] = self._capture(x)
            graph, static_in, static_out = self._graphs[key]
            static_in.copy_(x)
            graph.replay()
            out = static_out.clone()
            self._last = torch.cuda.Event()
            self._last.record(stream)
        return out
