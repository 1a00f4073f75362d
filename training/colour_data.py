"""Colour training pairs for the chroma network: full-chroma ground truth, JPEG as users meet it.

**Ground truth.** BSDS500's photos are themselves JPEGs with 4:2:0 chroma, so at their own size
their chroma has half the luma's resolution, and a network trained against them would learn
that blurred chroma is correct. Averaging 2x2 blocks (Pillow's ``reduce(2)``) puts the image on
the grid its chroma was sampled on: the result has full-resolution chroma (docs/colour.md
measures how much chroma detail each choice keeps).

**Degradations** (:class:`JPEGMix`, :class:`WebPMix`): what a bucket holds. A
:class:`JPEGMix` variant is a colour JPEG at a quality drawn from ``[low, high]``, 4:2:0 or (with
probability ``p444``) 4:4:4; with probability ``p_double`` it was saved before at another
quality, and with probability ``p_shift`` the image was cropped by 1-7 pixels between the two
saves, so the first save's 8x8 grid no longer lines up with the second's (what re-posting a
cropped photo does). A :class:`WebPMix` variant is a lossy
WebP (always 4:2:0) at a quality drawn from ``[low, high]``, from a JPEG with probability
``p_jpeg`` (platforms that serve WebP re-encode uploads); its condition is the quality its VP8
quantiser reads as, which is what the product knows of a WebP at inference.

Pairs hold the JFIF YCbCr planes (float32, [0, 255]) of the clean and the decoded image, and
the two condition values the network is given at inference (:func:`condition_planes`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcnn.colour import rgb_to_ycbcr
from arcnn.evaluation import encoded
from arcnn.images import codec_roundtrip, decode_image
from arcnn.restoration import condition_planes
from arcnn.webp import equivalent_quality, quantiser
from training.data import WindowSampler

SUBSAMPLING = {"4:4:4": 0, "4:2:0": 2}


def full_chroma(img: Image.Image) -> Image.Image:
    """RGB ground truth with full-resolution chroma: the image averaged over 2x2 blocks."""
    return img.convert("RGB").reduce(2)


@dataclass(frozen=True)
class Degraded:
    """A degraded image and what a decoder can tell about its last save."""

    image: Image.Image
    crop: tuple[int, int]
    quality: int
    subsampled: bool
    description: str


def _earlier_jpeg(img: Image.Image, rng: random.Random, low: int, high: int, parts: list[str]) -> Image.Image:
    """``img`` through a 4:2:0 JPEG save at a quality drawn from ``[low, high]`` (recorded in ``parts``)."""
    first = rng.randint(low, high)
    parts.append(f"q{first}")
    return codec_roundtrip(img, "JPEG", quality=first, subsampling=2)


@dataclass(frozen=True)
class JPEGMix:
    """Random colour JPEG degradations: quality, subsampling, double saves, grid shifts."""

    low: int = 5
    high: int = 95
    p444: float = 0.25
    p_double: float = 0.3
    p_shift: float = 0.5
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False, repr=False)

    def __call__(self, img: Image.Image) -> Degraded:
        rng = self.rng
        crop = (0, 0)
        parts = []
        if rng.random() < self.p_double:
            img = _earlier_jpeg(img, rng, max(self.low, 30), self.high, parts)
            if rng.random() < self.p_shift:
                crop = (rng.randint(1, 7), rng.randint(1, 7))
                img = img.crop((crop[1], crop[0], img.width, img.height))
                parts.append(f"shift{crop[0]},{crop[1]}")
        quality = rng.randint(self.low, self.high)
        sampling = "4:4:4" if rng.random() < self.p444 else "4:2:0"
        out = codec_roundtrip(img, "JPEG", quality=quality, subsampling=SUBSAMPLING[sampling])
        parts.append(f"q{quality} {sampling}")
        return Degraded(out, crop, quality, sampling != "4:4:4", " -> ".join(parts))

    def describe(self) -> dict:
        return {"type": "jpeg_mix", "low": self.low, "high": self.high, "p444": self.p444,
                "p_double": self.p_double, "p_shift": self.p_shift}


@dataclass(frozen=True)
class WebPMix:
    """Random lossy WebP degradations at a quality drawn from ``[low, high]``, each from a JPEG
    (q30-q95, 4:2:0) first with probability ``p_jpeg``; conditioned on the quality read."""

    low: int = 10
    high: int = 90
    p_jpeg: float = 0.3
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False, repr=False)

    def __call__(self, img: Image.Image) -> Degraded:
        rng = self.rng
        parts = []
        if rng.random() < self.p_jpeg:
            img = _earlier_jpeg(img, rng, 30, 95, parts)
        quality = rng.randint(self.low, self.high)
        data = encoded(img, "WEBP", quality=quality)
        read = equivalent_quality(quantiser(data))
        parts.append(f"webp q{quality} (reads q{read})")
        return Degraded(decode_image(data, 10**9).convert("RGB"), (0, 0), read, True, " -> ".join(parts))

    def describe(self) -> dict:
        return {"type": "webp_mix", "low": self.low, "high": self.high, "p_jpeg": self.p_jpeg}


MIXES = {"jpeg_mix": JPEGMix, "webp_mix": WebPMix}


def mix_from_config(config: dict, seed: int = 0) -> JPEGMix | WebPMix:
    config = dict(config)
    kind = config.pop("type")
    if kind not in MIXES:
        raise ValueError(f"a chroma model trains on a {{type = \"jpeg_mix\" or \"webp_mix\", ...}} "
                         f"degradation, not {kind!r}")
    return MIXES[kind](**config, rng=random.Random(seed))


def ycbcr_planes(img: Image.Image) -> np.ndarray:
    """3 x H x W float32 JFIF YCbCr of an RGB image, in [0, 255]."""
    return np.ascontiguousarray(np.moveaxis(rgb_to_ycbcr(np.asarray(img.convert("RGB"))), -1, 0),
                                dtype=np.float32)


@dataclass
class ColourPairs:
    """Clean and degraded YCbCr stacks, with each degraded image's (quality, subsampled)."""

    clean: list[np.ndarray]
    degraded: list[np.ndarray]
    conditions: list[tuple[int, bool]]

    def __len__(self) -> int:
        return len(self.clean)

    def network_input(self, i: int) -> np.ndarray:
        """The network's 5 x H x W input stack for pair ``i`` (as the product builds it)."""
        d = self.degraded[i]
        return np.concatenate([d, condition_planes(*self.conditions[i], d.shape[1:])])


def build_colour_pairs(paths: list[Path], mix: JPEGMix | WebPMix, variants: int) -> ColourPairs:
    clean, degraded, conditions = [], [], []
    for path in paths:
        with Image.open(path) as img:
            truth = full_chroma(img)
        truth_planes = ycbcr_planes(truth)
        for _ in range(variants):
            d = mix(truth)
            dy, dx = d.crop
            clean.append(truth_planes[:, dy:, dx:])  # a view: the crop costs no memory
            degraded.append(ycbcr_planes(d.image))
            conditions.append((d.quality, d.subsampled))
    return ColourPairs(clean, degraded, conditions)


class ColourPatchSampler(WindowSampler):
    """Random (5-channel input window, 2-channel chroma target) sub-images from :class:`ColourPairs`.

    Windows start on even pixels (as tiles do at inference, so the network's 2x2 grid keeps its
    phase against the JPEG blocks) and are flipped at random; never rotated, because JPEG's
    quantisation tables are not symmetric under a transpose.
    """

    def __init__(self, pairs: ColourPairs, patch: int, radius: int, seed: int, augment: str = "flips") -> None:
        if augment != "flips":
            raise ValueError(f"the chroma network trains with augment = \"flips\" only, not {augment!r}")
        if patch % 2 or radius % 2:
            raise ValueError("patch and radius must be even for the half-resolution chroma network")
        super().__init__([c.shape[1:] for c in pairs.clean], patch, radius, seed)
        self.pairs = pairs

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng, n, r, p = self.rng, self.window, self.radius, self.patch
        inputs = np.empty((batch, 5, n, n), dtype=np.float32)
        targets = np.empty((batch, 2, p, p), dtype=np.float32)
        for b in range(batch):
            i = rng.choice(self.usable)
            clean, degraded = self.pairs.clean[i], self.pairs.degraded[i]
            y = 2 * rng.integers(0, (clean.shape[1] - n) // 2 + 1)
            x = 2 * rng.integers(0, (clean.shape[2] - n) // 2 + 1)
            win_in = degraded[:, y:y + n, x:x + n]
            win_out = clean[1:, y + r:y + n - r, x + r:x + n - r]
            if rng.integers(0, 2):
                win_in, win_out = win_in[:, :, ::-1], win_out[:, :, ::-1]
            if rng.integers(0, 2):
                win_in, win_out = win_in[:, ::-1], win_out[:, ::-1]
            inputs[b, :3] = win_in
            inputs[b, 3:] = condition_planes(*self.pairs.conditions[i], (1, 1))
            targets[b] = win_out
        return torch.from_numpy(inputs / 255.0), torch.from_numpy(targets / 255.0)
