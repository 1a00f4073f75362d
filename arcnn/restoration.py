"""Restoring whole images: mode handling, colour, model choice, around the tiled engine.

Only luminance is restored by the network (it is trained on Y). Colour images are taken to the
JPEG/JFIF YCbCr space, the one their decoder came from; Y is restored and Cb/Cr are passed
through by default (``chroma="restore"`` runs the same model on them too; docs/colour.md has the
measurement behind the default). Alpha is copied untouched. Palette, CMYK and other modes are
converted to RGB(A); 16-bit grayscale is restored at 16-bit precision.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image
from torch import nn

from arcnn.acceleration import CudaGraphed, default_precision, prepare
from arcnn.colour import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb_uint8
from arcnn.errors import NoWeightsError
from arcnn.registry import bundled, load_named
from arcnn.settings import get_settings
from arcnn.tiling import restore_plane

_QUALITY_MODEL = re.compile(r"^jpeg-q(\d+)$")

PASSTHROUGH = "passthrough"
"""Pseudo-model name: the image goes out as it came in (re-encoded, metadata kept). ``auto``
picks it where every bundled model was measured to make the input worse (docs/model-choice.md)."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    return torch.device(device)


def nearest_quality_model(quality: int | None, names: list[str]) -> str | None:
    """The ``jpeg-qN`` model whose N is nearest ``quality`` (ties go to the lower quality)."""
    if quality is None:
        return None
    candidates = [(int(m.group(1)), n) for n in names if (m := _QUALITY_MODEL.match(n))]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(c[0] - quality), c[0]))[1]


def auto_model(quality: int | None, names: list[str], default: str, max_quality: int) -> str:
    """What ``--model auto`` applies to an input whose estimated JPEG quality is ``quality``.

    A JPEG gets the nearest-quality ``jpeg-qN`` model up to ``max_quality``; above it every model
    was measured to lose PSNR (the artifacts are too faint to be worth the smoothing), so it
    passes through. An input without JPEG tables (PNG, WebP, ...) gets ``default``
    (``ARCNN_DEFAULT_MODEL``, itself passthrough unless an operator knows better).
    """
    if quality is None:
        return default
    if quality > max_quality:
        return PASSTHROUGH
    return nearest_quality_model(quality, names) or default


class Restorer:
    """Holds loaded models and restores PIL images with them.

    Models are loaded through :func:`arcnn.acceleration.prepare` (channels-last, fast heads,
    ``precision``: ``auto`` is fp16 on CUDA and float32 on CPU); ``cuda_graphs`` replays each
    tile shape as a CUDA graph.
    """

    def __init__(self, model: str = "auto", device: str = "auto", tile: int = 512,
                 batch_size: int = 4, chroma: str = "passthrough", precision: str = "auto",
                 cuda_graphs: bool = False) -> None:
        if chroma not in ("passthrough", "restore"):
            raise ValueError("chroma must be 'passthrough' or 'restore'")
        self.default = model
        self.device = str(resolve_device(device))
        self.tile, self.batch_size, self.chroma = tile, batch_size, chroma
        self.precision = default_precision(self.device) if precision == "auto" else precision
        self.cuda_graphs = cuda_graphs and self.device.startswith("cuda")
        self._models: dict[str, nn.Module] = {}
        self.cards: dict[str, dict] = {}

    @classmethod
    def load(cls, model: str = "auto", device: str = "auto", tile: int = 512, batch_size: int = 4,
             chroma: str = "passthrough", precision: str = "auto", cuda_graphs: bool = False) -> "Restorer":
        """Build a restorer and load its fixed model now (``auto`` loads per image, on demand)."""
        restorer = cls(model, device, tile, batch_size, chroma, precision, cuda_graphs)
        if model not in ("auto", PASSTHROUGH):
            restorer.model(model)
        return restorer

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            net, card = load_named(name)
            fast = prepare(net, self.device, self.precision)
            self._models[name] = CudaGraphed(fast) if self.cuda_graphs else fast
            self.cards[name] = card
        return self._models[name]

    def choose_model(self, img: Image.Image) -> str:
        """The model for this image: the fixed one, or for ``auto`` :func:`auto_model`'s choice."""
        if self.default != "auto":
            return self.default
        names = list(bundled())
        if not names:
            raise NoWeightsError("no trained weights are bundled with this installation; "
                                 "train one with `arcnn train --config training/configs/jpeg-q10.toml`")
        settings = get_settings()
        return auto_model(img.info.get("jpeg_quality"), names, settings.default_model,
                          settings.auto_max_quality)

    def _plane(self, net: nn.Module, plane: np.ndarray) -> np.ndarray:
        return restore_plane(net, plane, self.tile, self.batch_size, self.device)

    def restore(self, img: Image.Image, model: str | None = None) -> Image.Image:
        """Restore one image; output has the input's mode family and keeps EXIF/ICC info."""
        name = model or self.choose_model(img)
        net = None if name == PASSTHROUGH else self.model(name)
        mode = img.mode
        if net is None:
            out = img.copy()
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            plane = np.asarray(img, dtype=np.float64)
            scale = 257.0 if mode.startswith("I;16") or plane.max() > 255 else 1.0
            restored = self._plane(net, plane / scale) * scale
            out = Image.fromarray(np.clip(np.floor(restored + 0.5), 0, 65535).astype(np.uint16))
        elif mode in ("1", "L", "LA"):
            planes = np.asarray(img.convert("LA"))
            y = to_uint8(self._plane(net, planes[..., 0]))
            out = Image.fromarray(y) if mode != "LA" else Image.fromarray(np.dstack([y, planes[..., 1]]), "LA")
        else:
            has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
            rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
            ycc = rgb_to_ycbcr(rgba[..., :3])
            channels = range(3) if self.chroma == "restore" else range(1)
            for c in channels:
                ycc[..., c] = self._plane(net, ycc[..., c])
            rgb = ycbcr_to_rgb_uint8(ycc)
            out = Image.fromarray(np.dstack([rgb, rgba[..., 3]]) if has_alpha else rgb,
                                  "RGBA" if has_alpha else "RGB")
        out.info = {k: v for k, v in img.info.items() if k in ("exif", "icc_profile", "dpi")}
        return out
