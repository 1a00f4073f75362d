"""The model card: what a weights file is, how it was made and how well it did.

A card is the JSON file beside a model's ``.safetensors`` (``<name>.json``). This module alone
reads and writes it, so the format has one definition. Cards written before a field existed
still load (every field but ``name`` has a default), and writing a card that was read gives
back the same bytes, so tools that amend cards (test-set figures, platform profiles) change
only what they mean to. An unknown field is an error rather than silently dropped on rewrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from arcnn.errors import ArcnnError

OMITTED_WHEN_NONE = ("task", "platform")
"""Fields written only when set: cards from before they existed lack them entirely."""


@dataclass
class ModelCard:
    """One model's card; fields appear in the JSON in this order."""

    name: str
    description: str = ""
    trained: bool = True
    task: str | None = None
    """What the network restores: ``luma`` (Y plane) or ``chroma`` (Cb/Cr)."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """The architecture as the training config gave it."""
    degradation: dict[str, Any] = field(default_factory=dict)
    """What the inputs went through in training, e.g. ``{"type": "jpeg", "quality": 10}``."""
    training_data: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    transfer: dict[str, Any] | None = None
    """The model it started from (``base``) and which layers it took, or None from scratch."""
    steps: int = 0
    samples_seen: int = 0
    wall_time_s: float | None = None
    device: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    """``validation`` (PSNR, SSIM, PSNR-B, input PSNR) and any test-set or held-out figures."""
    config: dict[str, Any] = field(default_factory=dict)
    """The built network's full config: what :func:`arcnn.architectures.build` rebuilds it from."""
    platform: dict[str, Any] | None = None
    """The platform profile a ``platform-*`` model was trained for."""

    @property
    def validation(self) -> dict[str, float]:
        """Validation figures (``psnr``, ``input_psnr``, ...); empty for an untrained model."""
        return self.metrics.get("validation", {})

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ArcnnError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
        if "name" not in data:
            raise ArcnnError(f"{source}: no name")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.name in OMITTED_WHEN_NONE and getattr(self, f.name) is None)}

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """The card of ``path`` (the card itself or its weights file: the suffix is replaced)."""
        path = Path(path).with_suffix(".json")
        return cls.from_json(json.loads(path.read_text()), str(path))

    def write(self, path: Path) -> None:
        """Write the card for ``path`` (suffix replaced by ``.json``)."""
        Path(path).with_suffix(".json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
