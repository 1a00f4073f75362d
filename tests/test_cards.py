"""Model cards: one dataclass reads and writes them, byte for byte what is on disk."""

import json
from pathlib import Path

import pytest

from arcnn.cards import ModelCard
from arcnn.errors import ArcnnError
from arcnn.registry import BUNDLED_DIR

CARDS = sorted(BUNDLED_DIR.glob("*.json"))


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_every_bundled_card_round_trips_byte_for_byte(path: Path, tmp_path: Path):
    card = ModelCard.read(path)
    assert card.name == path.stem and card.config
    card.write(tmp_path / path.name)
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_a_card_from_before_the_optional_fields_loads_with_defaults(tmp_path: Path):
    """A snapshot card has no recipe, training data, device or task: it loads, and writes the
    optional fields it never had as absent (task, platform) or null."""
    old = {"name": "snap", "description": "snapshot", "trained": True, "architecture": {"type": "fast"},
           "degradation": {"type": "jpeg", "quality": 10}, "steps": 4, "samples_seen": 16,
           "metrics": {"validation": {"psnr": 30.0, "input_psnr": 29.0}}, "config": {"type": "fast"}}
    (tmp_path / "snap.json").write_text(json.dumps(old))
    card = ModelCard.read(tmp_path / "snap.safetensors")
    assert (card.task, card.platform, card.recipe, card.transfer) == (None, None, None, None)
    assert card.validation == {"psnr": 30.0, "input_psnr": 29.0}
    written = card.to_json()
    assert "task" not in written and "platform" not in written and written["transfer"] is None
    assert ModelCard.from_json(written) == card


def test_unknown_fields_are_an_error_not_dropped_on_rewrite(tmp_path: Path):
    (tmp_path / "x.json").write_text(json.dumps({"name": "x", "licence": "mine"}))
    with pytest.raises(ArcnnError, match="unknown field.*licence"):
        ModelCard.read(tmp_path / "x.json")
