"""Restoring whole images: mode handling, colour, model choice, around the tiled engine.

Colour images are taken to the JPEG/JFIF YCbCr space, the one their decoder came from. Two
networks work on them: a luminance model (``jpeg-qN``, trained on Y) restores Y, and the chroma
network (``colour``, :class:`~arcnn.architectures.ChromaNet`) restores Cb/Cr guided by the
decoded Y, conditioned on the JPEG's quality and chroma subsampling. ``chroma="auto"`` runs the
chroma network where the measured policy (:mod:`arcnn.policy`) says it helps, ``"restore"`` on
every colour image, ``"passthrough"`` never (docs/colour.md has the measurements). Alpha is
copied untouched. Palette, CMYK and other modes are converted to RGB(A); 16-bit grayscale is
restored at 16-bit precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from arcnn.acceleration import CudaGraphed, default_precision, prepare
from arcnn.colour import full_to_studio_luma, rgb_to_ycbcr, studio_to_full_luma, to_uint8, ycbcr_to_rgb_uint8
from arcnn.errors import NoWeightsError
from arcnn.policy import AutoPolicy, shipped_policy
from arcnn.registry import bundled, is_bundled, load_named
from arcnn.settings import CHROMA_MODES, get_settings
from arcnn.tiling import restore_plane, restore_planes

_QUALITY_MODEL = re.compile(r"^jpeg-q(\d+)$")

PASSTHROUGH = "passthrough"
"""Pseudo-model name: the image goes out as it came in (re-encoded, metadata kept). ``auto``
picks it where every bundled model was measured to make the input worse (docs/model-choice.md)."""

CHROMA_MODEL = "colour"
"""The bundled chroma network."""

GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I")


@dataclass(frozen=True)
class Choice:
    """What is done to one image: the luminance model (or passthrough) and, for the chroma
    network, the (quality, subsampled) it is conditioned on (None: chroma passes through)."""

    luma: str
    chroma: tuple[int, bool] | None = None

    @property
    def label(self) -> str:
        """The name jobs and reports record: ``jpeg-q20+colour``, ``colour`` (chroma only), ..."""
        if self.chroma is None:
            return self.luma
        return CHROMA_MODEL if self.luma == PASSTHROUGH else f"{self.luma}+{CHROMA_MODEL}"


def condition_planes(quality: int, subsampled: bool, shape: tuple[int, int]) -> np.ndarray:
    """The chroma network's two condition planes, 2 x H x W on the [0, 255] scale of the image
    planes: the JPEG quality (1-100) and 255 where the chroma was subsampled. Read-only
    broadcast views: they cost no memory whatever the image size."""
    values = np.array([quality, 255.0 if subsampled else 0.0], dtype=np.float32)
    return np.broadcast_to(values[:, None, None], (2, *shape))


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


def auto_model(quality: int | None, names: list[str], default: str, max_quality: int,
               policy: AutoPolicy | None = None, subsampled: bool = True) -> str:
    """The luminance model ``--model auto`` applies to an input of estimated JPEG quality ``quality``.

    A JPEG gets the model the measured policy names for its quality and chroma subsampling
    (``policy``, by default the shipped one: a nearby ``jpeg-qN``, or passthrough where no model
    helped on validation).
    Above ``max_quality`` (``ARCNN_AUTO_MAX_QUALITY``, an operator's cut) it passes through. An
    input without JPEG tables (PNG, WebP, ...) gets ``default`` (``ARCNN_DEFAULT_MODEL``, itself
    passthrough unless an operator knows better).
    """
    if quality is None:
        return default
    if quality > max_quality:
        return PASSTHROUGH
    policy = policy or shipped_policy()
    if policy is not None:
        choice = policy.luma_model(quality, subsampled)
        if choice == PASSTHROUGH or choice in names:
            return choice
    return nearest_quality_model(quality, names) or default


class Restorer:
    """Holds loaded models and restores PIL images with them.

    Models are loaded through :func:`arcnn.acceleration.prepare` (channels-last, fast heads,
    ``precision``: ``auto`` is fp16 on CUDA and float32 on CPU); ``cuda_graphs`` replays each
    tile shape as a CUDA graph.
    """

    def __init__(self, model: str = "auto", device: str = "auto", tile: int = 512,
                 batch_size: int = 4, chroma: str = "auto", precision: str = "auto",
                 cuda_graphs: bool = False) -> None:
        if chroma not in CHROMA_MODES:
            raise ValueError(f"chroma must be one of {', '.join(CHROMA_MODES)}, not {chroma!r}")
        self.default = model
        self.device = str(resolve_device(device))
        self.tile, self.batch_size, self.chroma = tile, batch_size, chroma
        self.precision = default_precision(self.device) if precision == "auto" else precision
        self.cuda_graphs = cuda_graphs and self.device.startswith("cuda")
        self._models: dict[str, nn.Module] = {}
        self.cards: dict[str, dict] = {}

    @classmethod
    def load(cls, model: str = "auto", device: str = "auto", tile: int = 512, batch_size: int = 4,
             chroma: str = "auto", precision: str = "auto", cuda_graphs: bool = False) -> "Restorer":
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
                          settings.auto_max_quality, subsampled=bool(img.info.get("jpeg_subsampled")))

    def choose_chroma(self, img: Image.Image) -> tuple[int, bool] | None:
        """The chroma network's conditions (quality, subsampled) for this image, or None.

        Never for grey images. ``auto``: colour JPEGs whose quality the policy covers, where it
        measured a gain (only with ``--model auto``: a named model keeps chroma as it is unless
        ``restore``). ``restore``: every colour image; one without JPEG tables is treated as
        quality 50, 4:2:0 (its history is unknown).
        """
        if self.chroma == "passthrough" or img.mode in GREY_MODES:
            return None
        quality = img.info.get("jpeg_quality")
        subsampled = bool(img.info.get("jpeg_subsampled", True))
        if self.chroma == "restore":
            return (quality or 50, subsampled)
        if quality is None or quality > get_settings().auto_max_quality or not is_bundled(CHROMA_MODEL):
            return None
        policy = shipped_policy()
        return (quality, subsampled) if policy is not None and policy.use_chroma(quality, subsampled) else None

    def choose(self, img: Image.Image, model: str | None = None) -> Choice:
        """Everything done to ``img``: ``model`` (or the restorer's own choice) for luminance,
        and the chroma network's conditions."""
        spec = model or self.default
        if spec == PASSTHROUGH:  # asked for by name: the image goes out as it came in
            return Choice(PASSTHROUGH)
        if spec == "auto":
            return Choice(self.choose_model(img), self.choose_chroma(img))
        # a model named by the user: chroma passes through unless asked for (--chroma restore);
        # the policy measured its own luma choices with the chroma network, not arbitrary models
        return Choice(spec, self.choose_chroma(img) if self.chroma == "restore" else None)

    def _plane(self, net: nn.Module, plane: np.ndarray) -> np.ndarray:
        return restore_plane(net, plane, self.tile, self.batch_size, self.device)

    def restore_luma(self, name: str, y: np.ndarray) -> np.ndarray:
        """A colour image's full-range (JFIF) Y restored by the luminance model ``name``.

        The luma models learned on studio-range Y (16-235), so Y is mapped into that range and
        back; on BSDS500 val that gains more than feeding full-range Y (docs/colour.md).
        """
        return studio_to_full_luma(self._plane(self.model(name), full_to_studio_luma(y)))

    def restore_chroma(self, ycc: np.ndarray, conditions: tuple[int, bool]) -> np.ndarray:
        """Restored Cb/Cr (2 x H x W float32) of an H x W x 3 YCbCr image."""
        stack = [ycc[..., 0], ycc[..., 1], ycc[..., 2], *condition_planes(*conditions, ycc.shape[:2])]
        return restore_planes(self.model(CHROMA_MODEL), [stack], self.tile, self.batch_size, self.device)[0]

    def restore(self, img: Image.Image, model: str | Choice | None = None) -> Image.Image:
        """Restore one image; output has the input's mode family and keeps EXIF/ICC info.

        ``model`` is a luminance model name (chroma then follows this restorer's ``chroma``
        mode) or a :class:`Choice` from :meth:`choose`; None lets the restorer choose.
        """
        choice = model if isinstance(model, Choice) else self.choose(img, model)
        name = choice.luma
        net = None if name == PASSTHROUGH else self.model(name)
        mode = img.mode
        if net is None and choice.chroma is None:
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
            chroma = self.restore_chroma(ycc, choice.chroma) if choice.chroma is not None else None
            if net is not None:
                ycc[..., 0] = self.restore_luma(name, ycc[..., 0])
            if chroma is not None:
                ycc[..., 1], ycc[..., 2] = chroma
            rgb = ycbcr_to_rgb_uint8(ycc)
            out = Image.fromarray(np.dstack([rgb, rgba[..., 3]]) if has_alpha else rgb,
                                  "RGBA" if has_alpha else "RGB")
        out.info = {k: v for k, v in img.info.items() if k in ("exif", "icc_profile", "dpi")}
        return out
