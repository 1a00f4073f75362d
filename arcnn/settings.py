"""One settings object for the whole product, read from ``ARCNN_*`` environment variables.

Every tunable lives here so that operators have a single list to read (the README mirrors it),
and so that code never reaches into ``os.environ`` on its own. Credentials are deliberately not
settings: boto3 reads the standard ``AWS_*`` variables itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache

from arcnn.policy import CHROMA_MODES, TIERS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; build with :func:`get_settings` (cached) or :meth:`from_env`."""

    broker_url: str = "redis://localhost:6379/0"
    """Celery broker and job-state store (Redis)."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, moto server); None means AWS."""
    visibility_timeout: int = 3600
    """Seconds before an unacknowledged task is redelivered; longer than the longest task."""
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
    chroma: str = "auto"
    """Colour images' Cb/Cr: ``auto`` runs the chroma network where the measured policy says it
    helps, ``restore`` on every colour image, ``passthrough`` never (docs/colour.md)."""
    tier: str = "standard"
    """Model family ``auto`` picks from: ``standard`` (AR-CNN) or ``fast`` (Fast AR-CNN and a
    smaller chroma network: several times the throughput for a smaller gain; docs/performance.md)."""
    device: str = "auto"
    """Inference device: cpu, cuda, or auto (cuda when available)."""
    precision: str = "auto"
    """Inference precision: auto (fp16 on CUDA, bf16 on CPUs with AMX, fp32 on other CPUs), fp32,
    bf16 (GPUs, and CPUs where ``python -m bench.per_core`` shows it faster), or fp16 (GPUs).
    docs/performance.md has what reduced precision costs in PSNR."""
    tile: int = 0
    """Tile side in pixels for inference; memory is bounded by this, not the image. 0: 512 on
    GPUs, 384 on CPUs (as fast there, for half the feature maps' memory)."""
    batch_size: int = 0
    """Tiles of one shape run together in a batch; 0: 4 on GPUs (which need them to be busy), 1 on
    CPUs (as fast, and each tile of a batch costs its feature maps' memory)."""
    metrics_port: int = 9808
    """Port of the worker's Prometheus endpoint."""
    metrics_addr: str = "127.0.0.1"
    """Address the worker's Prometheus endpoint binds. Loopback by default: the metrics carry job
    ids, and a worker on a public host should not publish them to the world. Containers and
    multi-host setups set 0.0.0.0 (docker-compose.yml does) and keep the port off the internet."""
    list_batch: int = 100
    """Keys per queued message when a listing streams into the queue."""
    max_retries: int = 5
    """Retries (with backoff) of transient storage errors before a key is failed."""
    retry_backoff: float = 0.5
    """Seconds before the first retry of a transient storage error; doubles per retry."""
    io_threads: int = 4
    """Worker threads that fetch/decode and encode/upload around the single inference thread."""
    torch_threads: int = 0
    """CPU threads torch may use in workers and ``arcnn run`` (0 keeps torch's default)."""
    max_deliveries: int = 3
    """Times one key may be started without finishing (worker died) before it is failed as poison."""
    infer_threads: int = 0
    """Worker threads restoring images at once, sharing tile batches (0: 2 on CUDA, 1 on CPU)."""
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
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"ARCNN_PNG_COMPRESS_LEVEL must be 0-9, not {self.png_compress_level}")

    @classmethod
    def from_env(cls) -> "Settings":
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ARCNN_{f.name.upper()}")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache with ``get_settings.cache_clear()``)."""
    return Settings.from_env()
