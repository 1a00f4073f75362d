"""What a job is, and what can happen to each of its keys.

A :class:`JobSpec` is stored with a queued job (as JSON) so that any worker can pick up any
batch, and it is what ``arcnn restore`` and ``arcnn run`` build from their options.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcnn.errors import ArcnnError

OUTCOMES = ("restored", "passed_through", "skipped", "failed")
"""What can happen to one key: a model changed it (restored), no model was applied and it went
out as it came in (passed_through), its output was already there (skipped), or it failed. Job
counters, ``--json`` summaries and the metrics' ``outcome`` label all use these."""

FORMATS = ("png", "jpeg", "webp", "keep")
"""Output formats; ``keep`` writes each output in its input's format (JPEG, PNG or WebP; other
inputs as PNG) under its input's own extension."""

DEFAULT_QUALITY = 95
"""JPEG and WebP output quality unless ``--output-quality`` says otherwise."""


class SpecError(ArcnnError, ValueError):
    """A job's options cannot work together (an unknown format, a quality out of range)."""


@dataclass(frozen=True)
class JobSpec:
    """What to do; stored with a queued job, so new fields need defaults (older jobs lack them)."""

    src: str
    dest: str
    model: str = "auto"
    fmt: str = "png"
    overwrite: bool = False
    include: str | None = None
    allow_overlap: bool = False
    quality: int = DEFAULT_QUALITY
    """JPEG / WebP output quality (1-100)."""
    suffix: str = ""
    """Added to every output's name before the extension: ``a.jpg`` -> ``a_restored.png``."""

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise SpecError(f"unknown output format {self.fmt!r} (choose from {', '.join(FORMATS)})")
        if not 1 <= self.quality <= 100:
            raise SpecError(f"output quality must be 1-100, not {self.quality}")
        if "/" in self.suffix or "\\" in self.suffix:
            raise SpecError(f"suffix {self.suffix!r} must not contain a path separator")
