"""AR-CNN and its relatives as small, configurable ``nn.Module``s.

Every network here works on *valid* convolutions: the input is a luminance tile in [0, 1] that
has already been padded by :attr:`radius` pixels on each side, and the output is the restored
centre, ``2 * radius`` smaller in each dimension. Because no layer pads internally, a pixel's
output depends only on the input pixels within ``radius`` of it, which is what makes tiled
inference exact (see :mod:`arcnn.tiling`). Padding the *image* once, by replication, is what the
paper's reference code does at the image border.

Plain convolutional nets are described by spec strings such as ``"9-7-1-5"`` (kernel sizes), so
SRCNN (``9-1-5``), the deeper SRCNN (``9-1-1-5``) and the five-layer AR-CNN (``9-7-3-1-5``) are
one constructor away. Fast AR-CNN (strided first layer, shrinking, enhancement, expanding and a
strided deconvolution) has its own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {
    "9-7-1-5": (64, 32, 16),
    "9-1-5": (64, 32),
    "9-1-1-5": (64, 32, 16),
    "9-7-3-1-5": (64, 32, 16, 16),
}
"""Hidden-layer widths used in the paper for each published spec."""


def parse_spec(spec: str) -> tuple[int, ...]:
    """``"9-7-1-5"`` -> ``(9, 7, 1, 5)``; kernels must be odd so every layer has a centre."""
    try:
        kernels = tuple(int(k) for k in spec.split("-"))
    except ValueError as exc:
        raise ValueError(f"bad architecture spec {spec!r}: expected kernel sizes like 9-7-1-5") from exc
    if len(kernels) < 2 or any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"bad architecture spec {spec!r}: need >= 2 odd kernel sizes")
    return kernels


class Network(nn.Module):
    """The contract every network the tiler runs keeps (the trained ones here, and the fast and
    graph-replaying copies of :mod:`arcnn.acceleration`): the tiler, the fast paths and the
    model cards read these, so each network declares them instead of being probed for them.

    - ``radius``: input pixels needed on each side of an output pixel (the tile halo);
    - ``stride``: the grid a tile must start on (2 for the half-resolution networks, whose tiles
      must see the same 2x2 grid as the whole image);
    - ``in_channels`` / ``out_channels``: planes in and out (1 and 1 for luminance; the chroma
      network takes Y, Cb, Cr and two condition planes and returns Cb and Cr);
    - ``macs_per_pixel``: multiply-adds per output pixel (throughput reports);
    - ``residual``: whether the output is a correction added to the input.
    """

    radius: int
    macs_per_pixel: int
    stride: int = 1
    in_channels: int = 1
    out_channels: int = 1
    residual: bool = False


class ConvNet(Network):
    """A plain stack of valid convolutions with ReLU between them (AR-CNN, SRCNN, ...).

    ``residual=True`` makes the net predict the correction to add to the (cropped) input
    instead of the clean image itself; it trains faster and is what we ship.
    """

    def __init__(self, spec: str = "9-7-1-5", widths: tuple[int, ...] | None = None,
                 residual: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.kernels = parse_spec(spec)
        self.widths = tuple(widths) if widths is not None else DEFAULT_WIDTHS.get(spec) or ()
        if len(self.widths) != len(self.kernels) - 1:
            raise ValueError(f"{spec} needs {len(self.kernels) - 1} hidden widths, got {self.widths}")
        self.residual = residual
        channels = (1, *self.widths, 1)
        self.layers = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], k) for i, k in enumerate(self.kernels)
        )

    @property
    def radius(self) -> int:
        """Receptive-field radius: how far (in pixels) an output looks in each direction."""
        return sum((k - 1) // 2 for k in self.kernels)

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel (biases and ReLUs ignored)."""
        channels = (1, *self.widths, 1)
        return sum(k * k * channels[i] * channels[i + 1] for i, k in enumerate(self.kernels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = F.relu(y)
        if self.residual:
            r = self.radius
            y = y + x[..., r:x.shape[-2] - r, r:x.shape[-1] - r]
        return y

    def config(self) -> dict:
        return {"type": "convnet", "spec": self.spec, "widths": list(self.widths),
                "residual": self.residual}


class FastARCNN(Network):
    """Fast AR-CNN (Dong et al., "Deep Convolution Networks for Compression Artifacts Reduction").

    conv 9x9x64 stride 2 -> shrink 1x1x32 -> enhance 7x7x32 -> expand 1x1x64 -> deconv 9x9 stride 2.
    Working at half resolution makes it several times cheaper per pixel than AR-CNN
    (``macs_per_pixel`` says how much).

    With valid layers, deconvolution output ``o`` sits over input pixel ``o + 6`` (the first
    layer's centre 4 plus the enhancement layer's centre 3 at stride 2, minus the deconvolution's
    centre 4). Outputs are only complete where every overlapping deconvolution term exists, so
    the input pad (``radius``) is 16: the 14-pixel reach plus room for odd sizes, kept even so
    that tiles starting on even offsets see the same stride-2 grid as the whole image.
    """

    stride = 2
    radius = 16

    def __init__(self, residual: bool = False, d: int = 64, s: int = 32, m: int = 7) -> None:
        super().__init__()
        self.residual = residual
        self.d, self.s, self.m = d, s, m
        self.extract = nn.Conv2d(1, d, 9, stride=2)
        self.shrink = nn.Conv2d(d, s, 1)
        self.enhance = nn.Conv2d(s, s, m)
        self.expand = nn.Conv2d(s, d, 1)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=2)

    @property
    def macs_per_pixel(self) -> int:
        d, s, m = self.d, self.s, self.m
        low_res = 81 * d + d * s + m * m * s * s + s * d + 81 * d
        return low_res // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] - 2 * self.radius, x.shape[-1] - 2 * self.radius
        y = F.relu(self.extract(x))
        y = F.relu(self.shrink(y))
        y = F.relu(self.enhance(y))
        y = F.relu(self.expand(y))
        y = self.deconv(y)
        offset = self.radius - 6 - (self.m - 7)
        y = y[..., offset:offset + h, offset:offset + w]
        if y.shape[-2] != h or y.shape[-1] != w:
            raise RuntimeError("input too small for Fast AR-CNN")
        if self.residual:
            r = self.radius
            y = y + x[..., r:r + h, r:r + w]
        return y

    def config(self) -> dict:
        return {"type": "fast", "residual": self.residual, "d": self.d, "s": self.s, "m": self.m}


class ChromaNet(Network):
    """Luma-guided chroma restoration, run at half resolution.

    Input: ``(N, 5, H, W)`` full-resolution planes in [0, 1]: decoded Y, Cb, Cr (JFIF full range)
    and two constant *condition* planes, the JPEG quality / 255 and 1 if the chroma was
    subsampled (4:2:0 / 4:2:2) else 0. Output: restored Cb and Cr ``(N, 2, H - 2r, W - 2r)``.

    Why this shape: at low qualities nearly every chroma AC coefficient is quantised away and a
    4:2:0 chroma block covers 16x16 pixels, so chroma has to be inferred from luma edges over a
    wide area. A space-to-depth by 2 (every 2x2 block's four luma samples become channels, so no
    luma detail is lost) lets valid convolutions reach twice as far for a quarter of the
    multiply-adds; a depth-to-space at the end returns full-resolution chroma, which is also
    what un-does 4:2:0 subsampling at high qualities. The quality plane lets one network cover
    q5-q95 without smoothing mild JPEGs as hard as heavy ones.

    Tiling stays exact as for Fast AR-CNN: ``radius`` is even and tiles start on even offsets, so
    every tile sees the same 2x2 grid as the whole image.
    """

    stride = 2
    in_channels = 5
    out_channels = 2

    def __init__(self, kernels: tuple[int, ...] = (5, 5, 5, 5, 3),
                 widths: tuple[int, ...] = (64, 64, 64, 64), residual: bool = True) -> None:
        super().__init__()
        if len(widths) != len(kernels) - 1 or any(k % 2 == 0 for k in kernels):
            raise ValueError(f"chroma net needs odd kernels and one width per hidden layer: {kernels}, {widths}")
        self.kernels, self.widths, self.residual = tuple(kernels), tuple(widths), residual
        channels = (4 * self.in_channels, *self.widths, 4 * self.out_channels)
        self.layers = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], k) for i, k in enumerate(self.kernels)
        )

    @property
    def radius(self) -> int:
        return 2 * sum((k - 1) // 2 for k in self.kernels)

    @property
    def macs_per_pixel(self) -> int:
        channels = (4 * self.in_channels, *self.widths, 4 * self.out_channels)
        return sum(k * k * channels[i] * channels[i + 1] for i, k in enumerate(self.kernels)) // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_unshuffle(x, 2)
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = F.relu(y)
        y = F.pixel_shuffle(y, 2)
        if self.residual:
            r = self.radius
            y = y + x[:, 1:3, r:x.shape[-2] - r, r:x.shape[-1] - r]
        return y

    def config(self) -> dict:
        return {"type": "chroma", "kernels": list(self.kernels), "widths": list(self.widths),
                "residual": self.residual}


Model = ConvNet | FastARCNN | ChromaNet


@dataclass(frozen=True)
class Architecture:
    """A named architecture and how to build it."""

    name: str
    description: str
    config: dict

    def build(self) -> nn.Module:
        return build(self.config)


ARCHITECTURES: dict[str, Architecture] = {
    "arcnn": Architecture("arcnn", "AR-CNN 9-7-1-5 (64-32-16)", {"type": "convnet", "spec": "9-7-1-5"}),
    "srcnn": Architecture("srcnn", "SRCNN 9-1-5 (64-32)", {"type": "convnet", "spec": "9-1-5"}),
    "srcnn-deep": Architecture("srcnn-deep", "deeper SRCNN 9-1-1-5 (64-32-16)",
                               {"type": "convnet", "spec": "9-1-1-5"}),
    "arcnn5": Architecture("arcnn5", "five-layer AR-CNN 9-7-3-1-5 (64-32-16-16)",
                           {"type": "convnet", "spec": "9-7-3-1-5"}),
    "fast-arcnn": Architecture("fast-arcnn", "Fast AR-CNN (stride 2, 64-32-32-64)", {"type": "fast"}),
    "chroma": Architecture("chroma", "luma-guided chroma network (half resolution, 5-5-5-5-3, 64 wide)",
                           {"type": "chroma", "kernels": [5, 5, 5, 5, 3], "widths": [64, 64, 64, 64]}),
    "chroma-fast": Architecture("chroma-fast", "fast-tier chroma network (half resolution, 5-5-5-3, 32 wide)",
                                {"type": "chroma", "kernels": [5, 5, 5, 3], "widths": [32, 32, 32]}),
}


def build(config: dict) -> nn.Module:
    """Build a model from its JSON config (as stored in model cards)."""
    config = dict(config)
    kind = config.pop("type", "convnet")
    if kind == "convnet":
        widths = config.pop("widths", None)
        return ConvNet(widths=tuple(widths) if widths else None, **config)
    if kind == "fast":
        return FastARCNN(**config)
    if kind == "chroma":
        return ChromaNet(tuple(config.pop("kernels")), tuple(config.pop("widths")), **config)
    raise ValueError(f"unknown architecture type {kind!r}")
