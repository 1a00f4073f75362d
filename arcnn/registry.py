"""Trained weights on disk: safetensors tensors plus a JSON model card, and the bundled registry.

Weights are stored with safetensors, which holds only tensors, so loading a model file can never
execute code (unlike a pickled ``torch.save``). The card beside it (``<name>.json``) records how
the model was made: architecture config, training data, degradation, steps, wall time, metrics.
Every ``*.json`` card in ``arcnn/weights/`` with its ``.safetensors`` file is a bundled model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from arcnn.architectures import build
from arcnn.cards import ModelCard
from arcnn.errors import NoWeightsError
from arcnn.model_names import random_spec

BUNDLED_DIR = Path(__file__).parent / "weights"


def save_model(model: nn.Module, path: Path, card: ModelCard) -> ModelCard:
    """Write ``path`` (.safetensors) and its card (``path`` with .json), which gains the model's
    ``config``; returns the card as written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path.with_suffix(".safetensors")))
    card = replace(card, config=model.config())
    card.write(path)
    return card


def load_model(path: Path) -> tuple[nn.Module, ModelCard]:
    """Load a model and its card from ``path`` (.safetensors or .json, either works)."""
    path = Path(path)
    weights, card_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not weights.exists() or not card_path.exists():
        raise NoWeightsError(f"no trained weights at {weights} (needs .safetensors and .json card)")
    card = ModelCard.read(card_path)
    model = build(card.config)
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    return model, card


def bundled() -> dict[str, ModelCard]:
    """Name -> card for every model shipped in the package, sorted by name."""
    return {path.stem: ModelCard.read(path) for path in sorted(BUNDLED_DIR.glob("*.json"))
            if path.with_suffix(".safetensors").exists()}


def is_bundled(name: str) -> bool:
    """Whether ``name`` is a bundled model: two file checks, where :func:`bundled` reads every card."""
    return (BUNDLED_DIR / f"{name}.json").exists() and (BUNDLED_DIR / f"{name}.safetensors").exists()


def load_named(name: str) -> tuple[nn.Module, ModelCard]:
    """Load a bundled model by name, a path to a .safetensors file, or ``random:<spec>``.

    ``random:<spec>`` builds a seeded, untrained network: tests and benchmarks use it so that
    they measure plumbing and speed without depending on which trained weights are bundled.
    """
    if (spec := random_spec(name)) is not None:
        from arcnn.architectures import ARCHITECTURES, ConvNet

        torch.manual_seed(0)
        model = ARCHITECTURES[spec].build() if spec in ARCHITECTURES else ConvNet(spec, residual=True)
        for p in model.parameters():
            nn.init.normal_(p, std=1e-3)
        return model.eval(), ModelCard(name=name, trained=False)
    if name.endswith(".safetensors") or "/" in name:
        return load_model(Path(name))
    if (BUNDLED_DIR / f"{name}.json").exists():
        return load_model(BUNDLED_DIR / name)
    available = ", ".join(bundled()) or "none: no trained weights are bundled yet"
    raise NoWeightsError(f"unknown model {name!r}; bundled models: {available}")
