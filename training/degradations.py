"""Composable degradations: what a codec or a platform does to an image.

Each degradation is a small callable object ``PIL.Image -> PIL.Image`` with a JSON-able
``describe()``; chains compose them, so a platform pipeline (resize, then JPEG at 4:2:0, then
re-encode) is just a :class:`Chain`. Encoding round-trips through Pillow's real encoders in memory.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field

from PIL import Image

from arcnn.images import codec_roundtrip

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@dataclass(frozen=True)
class JPEG:
    """Pillow's (libjpeg's) encoder at an IJG quality; grayscale images stay single-channel."""

    quality: int
    subsampling: str = "4:2:0"

    def __call__(self, img: Image.Image) -> Image.Image:
        params: dict[str, object] = {"quality": self.quality}
        if img.mode != "L":
            params["subsampling"] = SUBSAMPLING[self.subsampling]
        return codec_roundtrip(img, "JPEG", **params)

    def describe(self) -> dict:
        return {"type": "jpeg", "quality": self.quality, "subsampling": self.subsampling}


@dataclass(frozen=True)
class RandomJPEG:
    """JPEG at a quality drawn uniformly from [low, high]: the blind model's training degradation."""

    low: int
    high: int
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False, repr=False)

    def __call__(self, img: Image.Image) -> Image.Image:
        return JPEG(self.rng.randint(self.low, self.high))(img)

    def describe(self) -> dict:
        return {"type": "random_jpeg", "low": self.low, "high": self.high}


def random_table(rng: random.Random, low: float, high: float) -> list[int]:
    """A quantisation table no IJG quality produces, natural order: flat, a ramp in frequency,
    or the Annex K shape with each entry jittered by up to 35% (the families cameras, image
    editors and encoders with their own tables write), scaled so that its strength (the
    geometric mean step over the lowest AC frequencies, :func:`arcnn.history.strength`) is drawn
    log-uniformly from [low, high]."""
    from arcnn.history import strength
    from arcnn.quality import STD_LUMA

    shape = rng.choice(("flat", "ramp", "jittered"))
    if shape == "flat":
        table = [1.0] * 64
    elif shape == "ramp":
        slope = rng.uniform(0.1, 0.6)
        table = [1.0 + slope * (i // 8 + i % 8) for i in range(64)]
    else:
        table = [v * rng.uniform(0.65, 1.35) for v in STD_LUMA]
    target = math.exp(rng.uniform(math.log(low), math.log(high)))
    scale = target / strength(table)
    return [max(1, min(255, round(v * scale))) for v in table]


@dataclass(frozen=True)
class RandomTables:
    """JPEG (4:2:0) with a fresh :func:`random_table` for luma and chroma on every image, of a
    strength in [low, high]: the training degradation of the models for tables of any shape."""

    low: float
    high: float
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False, repr=False)

    def __call__(self, img: Image.Image) -> Image.Image:
        tables = [random_table(self.rng, self.low, self.high) for _ in range(1 if img.mode == "L" else 2)]
        params: dict[str, object] = {"qtables": tables}
        if img.mode != "L":
            params["subsampling"] = SUBSAMPLING["4:2:0"]
        return codec_roundtrip(img, "JPEG", **params)

    def describe(self) -> dict:
        return {"type": "random_tables", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class WebP:
    """Lossy WebP at a quality (0-100)."""

    quality: int

    def __call__(self, img: Image.Image) -> Image.Image:
        out = codec_roundtrip(img, "WEBP", quality=self.quality)
        return out.convert(img.mode) if out.mode != img.mode else out

    def describe(self) -> dict:
        return {"type": "webp", "quality": self.quality}


@dataclass(frozen=True)
class Resize:
    """Resize rules platforms apply on upload; never enlarges.

    ``long_side``: scale so the longer side is at most this; ``box``: fit inside (w, h).
    """

    long_side: int | None = None
    box: tuple[int, int] | None = None
    filter: str = "bicubic"

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        w, h = size
        scale = 1.0
        if self.long_side is not None:
            scale = min(scale, self.long_side / max(w, h))
        if self.box is not None:
            scale = min(scale, self.box[0] / w, self.box[1] / h)
        return max(1, round(w * scale)), max(1, round(h * scale))

    def __call__(self, img: Image.Image) -> Image.Image:
        size = self.target_size(img.size)
        return img if size == img.size else img.resize(size, RESAMPLING[self.filter])

    def describe(self) -> dict:
        return {"type": "resize", "long_side": self.long_side,
                "box": list(self.box) if self.box else None, "filter": self.filter}


@dataclass(frozen=True)
class Chain:
    """Apply degradations in order."""

    steps: tuple

    def __call__(self, img: Image.Image) -> Image.Image:
        for step in self.steps:
            img = step(img)
        return img

    def describe(self) -> dict:
        return {"type": "chain", "steps": [s.describe() for s in self.steps]}


def from_config(config: dict):
    """Build a degradation from its ``describe()`` form (as written in training configs)."""
    config = dict(config)
    kind = config.pop("type")
    if kind == "jpeg":
        return JPEG(**config)
    if kind == "random_jpeg":
        return RandomJPEG(**config)
    if kind == "webp":
        return WebP(**config)
    if kind == "random_tables":
        return RandomTables(**config)
    if kind == "resize":
        box = config.pop("box", None)
        return Resize(box=tuple(box) if box else None, **config)
    if kind == "chain":
        return Chain(tuple(from_config(s) for s in config["steps"]))
    raise ValueError(f"unknown degradation {kind!r}")
