"""What a model's name says about it: every naming pattern of the bundled models, in one place.

A bundled model is found by its name, and ``--model auto``, ``arcnn models``, training and the
studies all pick models by what the name encodes, so the patterns are parsed here and nowhere
else:

- ``jpeg-qN`` (standard tier) and ``fast-arcnn-qN`` (fast tier): luminance models trained on IJG
  JPEGs of quality N; ``jpeg-any`` is the standard tier's blind one, trained on many qualities.
- ``webp-qN``: lossy WebP at quality N. ``jpeg-tables-sN``: JPEGs whose tables are not IJG's,
  of strength N (:func:`arcnn.history.strength`).
- ``colour`` / ``colour-fast``: each tier's chroma network.
- ``platform-<profile>``: trained for a platform profile (``training/profiles/<profile>.toml``).
- a suffix after the number (``jpeg-q10-stage2``, ``jpeg-q10-scratch``) marks a variant of that
  model: an earlier training stage or a comparison run, never what ``auto`` picks.

The functions are pure: they look at names only, never at the weights folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TIERS = ("standard", "fast")
"""Model families ``auto`` chooses from: ``standard`` (AR-CNN ``jpeg-qN`` + ``colour``) or
``fast`` (Fast AR-CNN ``fast-arcnn-qN`` + ``colour-fast``: several times cheaper per pixel for a
smaller gain; docs/performance.md measures both). Each has its own measured policy."""

QUALITY_FAMILIES = {"standard": "jpeg-q", "fast": "fast-arcnn-q"}
"""The name prefix of each tier's single-quality luminance models."""
CHROMA_MODELS = {"standard": "colour", "fast": "colour-fast"}
"""The bundled chroma network of each tier."""
CHROMA_MODEL = CHROMA_MODELS["standard"]
BLIND_MODEL = "jpeg-any"
"""The standard tier's model trained on every quality at once (the paper's blind comparison)."""
WEBP_FAMILY = "webp-q"
TABLES_FAMILY = "jpeg-tables-s"
PLATFORM_PREFIX = "platform-"
RANDOM_PREFIX = "random:"

_NUMBERED = re.compile(r"^(?P<family>jpeg-tables-s|jpeg-q|fast-arcnn-q|webp-q)(?P<number>\d+)(?:-(?P<variant>.+))?$")
_PROFILE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class NumberedName:
    """A name of the form ``<family><N>[-<variant>]``: ``jpeg-q10`` is ("jpeg-q", 10, None),
    ``jpeg-q10-stage2`` ("jpeg-q", 10, "stage2")."""

    family: str
    number: int
    variant: str | None = None


def parse_numbered(name: str) -> NumberedName | None:
    """The family, number and variant of a numbered model name, or None for any other name."""
    m = _NUMBERED.match(name)
    return None if m is None else NumberedName(m["family"], int(m["number"]), m["variant"])


def numbered(names: list[str], family: str) -> dict[int, str]:
    """The models of ``family`` among ``names`` by their number, variants left out:
    ``numbered(names, "webp-q")`` is ``{20: "webp-q20", 40: "webp-q40", ...}``."""
    return {p.number: n for n in names if (p := parse_numbered(n)) and p.family == family and p.variant is None}


def in_family(name: str, family: str) -> bool:
    """Whether ``name`` is of ``family``, variants (earlier stages, comparison runs) included."""
    parsed = parse_numbered(name)
    return parsed is not None and parsed.family == family


def quality_model(quality: int, tier: str = "standard") -> str:
    """The name of ``tier``'s luminance model for JPEG quality ``quality``: ``jpeg-q20``."""
    return f"{QUALITY_FAMILIES[tier]}{quality}"


def quality_models(names: list[str], tier: str = "standard") -> dict[int, str]:
    """The tier's single-quality models among ``names``, by quality: ``{10: "jpeg-q10", ...}``
    (``fast-arcnn-qN`` for the fast tier)."""
    return numbered(names, QUALITY_FAMILIES[tier])


def nearest_quality_model(quality: int | None, names: list[str], tier: str = "standard") -> str | None:
    """The tier's ``jpeg-qN`` (``fast-arcnn-qN``) model whose N is nearest ``quality`` (ties go
    to the lower quality, whose artifacts are the stronger)."""
    models = quality_models(names, tier)
    if quality is None or not models:
        return None
    return models[min(models, key=lambda q: (abs(q - quality), q))]


def webp_models(names: list[str]) -> dict[int, str]:
    """The ``webp-qN`` models among ``names``, by WebP quality."""
    return numbered(names, WEBP_FAMILY)


def is_profile_name(profile: str) -> bool:
    """Whether ``profile`` can name a platform profile: lower-case letters, digits and dashes, so
    that its model's name (:func:`platform_model`) is a plain file name like every other model's."""
    return _PROFILE.match(profile) is not None


def platform_model(profile: str) -> str:
    """The name of the model trained for the platform profile ``profile``: ``platform-twitter``."""
    return f"{PLATFORM_PREFIX}{profile}"


def random_spec(name: str) -> str | None:
    """The architecture spec of a ``random:<spec>`` name (a seeded untrained network, which tests
    and benchmarks use), or None for any other name."""
    return name.removeprefix(RANDOM_PREFIX) if name.startswith(RANDOM_PREFIX) else None
