"""What ``arcnn restore`` and ``arcnn eval`` can be told by ``ARCNN_*`` environment variables.

The commands parse the environment (:meth:`Settings.from_env`) and pass the values into the
library, which never reads ``os.environ`` itself: a program using :class:`~arcnn.restoration.Restorer`
gets what it passes, not what the shell happened to export. The worker's own settings (broker,
storage, queue) extend these in :mod:`worker.settings`, from the same kind of variables.
Credentials are deliberately not settings: boto3 reads the standard ``AWS_*`` variables itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Self

from arcnn.model_names import TIERS
from arcnn.policy import CHROMA_MODES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The precision names: auto and those :data:`arcnn.acceleration.PRECISIONS` maps to torch dtypes
(spelled out here so that reading the settings, e.g. in ``arcnn enqueue``, never imports torch)."""


@dataclass(frozen=True)
class Settings:
    """Inference configuration; the commands build it with :meth:`from_env`."""

    max_pixels: int = 100_000_000
    """Decompression-bomb limit: images with more pixels are refused, not decoded."""
    default_model: str = "passthrough"
    """Model ``--model auto`` applies to inputs without JPEG tables (PNG, WebP, ...), whose quality
    cannot be estimated. Passthrough by default: on clean images and on WebP every bundled model was
    measured to lose PSNR (docs/model-choice.md); name a model (e.g. platform-webp) if you know
    what made the artifacts."""
    auto_max_quality: int = 100
    """``--model auto`` passes JPEGs above this estimated quality through untouched. The measured
    policy (arcnn/auto_policy.json, docs/model-choice.md) already passes through every quality
    where no model helped on validation; this is an operator's extra cut (100: none)."""
    input_quality: int = 0
    """The JPEG quality ``--model auto`` assumes every input was compressed at (1-100), in place of
    what the file tables, WebP header and pixels say: FBCNN's flexible control, lower values
    restore more strongly. 0 (the default): read each input's history (arcnn/reading.py). Not the
    quality outputs are written at."""
    chroma: str = "auto"
    """Colour images' Cb/Cr: ``auto`` runs the chroma network where the measured policy says it
    helps, ``restore`` on every colour image, ``passthrough`` never (docs/colour.md)."""
    tier: str = "standard"
    """Model family ``auto`` picks from: ``standard`` (AR-CNN) or ``fast`` (Fast AR-CNN and a
    smaller chroma network: several times the throughput for a smaller gain; docs/performance.md)."""
    device: str = "auto"
    """Inference device: cpu, cuda, or auto (cuda when available)."""
    precision: str = "auto"
    """Inference precision: auto (fp16 on CUDA, bf16 on CPUs with AMX or AMD AVX512-BF16, fp32 on
    other CPUs), fp32, bf16 (GPUs, and CPUs where ``python -m bench.per_core`` shows it faster),
    or fp16 (GPUs).
    docs/performance.md has what reduced precision costs in PSNR."""
    tile: int = 0
    """Tile side in pixels for inference; memory is bounded by this, not the image. 0: 512 on
    GPUs; on CPUs 384 for full-resolution networks (as fast there, for half the feature maps'
    memory) and 512 for half-resolution ones (arcnn.tiling.auto_tile)."""
    batch_size: int = 0
    """Tiles of one shape run together in a batch; 0: 4 on GPUs (which need them to be busy), 1 on
    CPUs (as fast, and each tile of a batch costs its feature maps' memory)."""
    png_compress_level: int = 1
    """zlib level of PNG output, 0-9. Level 1 encodes several times faster than Pillow's default
    6 for slightly larger files: on a CPU worker the encoder competes with inference."""

    def __post_init__(self) -> None:
        if self.chroma not in CHROMA_MODES:
            raise ValueError(f"ARCNN_CHROMA must be one of {', '.join(CHROMA_MODES)}, not {self.chroma!r}")
        if self.tier not in TIERS:
            raise ValueError(f"ARCNN_TIER must be one of {', '.join(TIERS)}, not {self.tier!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"ARCNN_PRECISION must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 0 <= self.input_quality <= 100:
            raise ValueError(f"ARCNN_INPUT_QUALITY must be 1-100 (0: read from each input), not {self.input_quality}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"ARCNN_PNG_COMPRESS_LEVEL must be 0-9, not {self.png_compress_level}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """The settings ``environ`` (the command's ``os.environ``) sets: field ``tile`` from
        ``ARCNN_TILE``, and so on; unset variables keep the defaults."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(f"ARCNN_{f.name.upper()}")
            if raw is None:
                continue
            default = f.default
            if isinstance(default, bool):
                values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw or None
        return cls(**values)  # type: ignore[arg-type]

