"""What ``--model auto`` does with a JPEG of each quality: a measured table, shipped as data.

The table (``auto_policy.json`` beside this module) is written by ``python -m
training.studies.auto_policy`` from BSDS500 *val*: for every quality of its grid it names the luminance
model to apply (or ``passthrough``) and whether the chroma network runs, separately for 4:2:0 and
for 4:4:4 chroma (a decoder knows which; grey JPEGs use the 4:4:4 column). Each choice is the one with the best mean RGB PSNR gain among those that make no
validation image more than ``max_loss_db`` worse (docs/model-choice.md has the table and how it
was measured). A quality between grid points takes the nearest grid point's choice (ties go to
the lower quality, the one with stronger artifacts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from arcnn.model_names import TIERS

CHROMA_MODES = ("auto", "restore", "passthrough")
"""How colour images' Cb/Cr are handled: the policy's choice, the chroma network always, never."""
POLICY_FILES = {"standard": Path(__file__).parent / "auto_policy.json",
                "fast": Path(__file__).parent / "auto_policy-fast.json"}
POLICY_FILE = POLICY_FILES["standard"]


def nearest_grid_point(table: dict[int, object], quality: int) -> object:
    """The entry of a table keyed by quality for the nearest grid point (ties to the lower
    quality, the one with stronger artifacts)."""
    return table[min(table, key=lambda q: (abs(q - quality), q))]


@dataclass(frozen=True)
class AutoPolicy:
    """Per-quality choices by subsampling ("4:2:0", "4:4:4"): ``luma[s][q]`` a model name,
    ``chroma[s][q]`` a flag."""

    luma: dict[str, dict[int, str]]
    chroma: dict[str, dict[int, bool]]

    def luma_model(self, quality: int, subsampled: bool = True) -> str:
        return str(nearest_grid_point(self.luma[_column(subsampled)], quality))

    def use_chroma(self, quality: int, subsampled: bool) -> bool:
        table = self.chroma.get(_column(subsampled), {})
        return bool(nearest_grid_point(table, quality)) if table else False

    def mildest_chroma(self, quality: int, subsampled: bool) -> int | None:
        """The highest grid quality, at most ``quality``, where the chroma network runs: the
        mildest condition it was measured to help at (None: nowhere)."""
        table = self.chroma.get(_column(subsampled), {})
        return max((q for q, run in table.items() if run and q <= quality), default=None)

    @classmethod
    def from_json(cls, data: dict) -> "AutoPolicy":
        return cls({s: {int(q): m for q, m in t.items()} for s, t in data["luma"].items()},
                   {s: {int(q): bool(v) for q, v in t.items()} for s, t in data["chroma"].items()})

    def to_json(self) -> dict:
        return {key: {s: {str(q): v for q, v in sorted(t.items())} for s, t in table.items()}
                for key, table in (("luma", self.luma), ("chroma", self.chroma))}


def _column(subsampled: bool) -> str:
    return "4:2:0" if subsampled else "4:4:4"


@lru_cache(maxsize=len(TIERS))
def shipped_policy(tier: str = "standard") -> AutoPolicy | None:
    """The measured policy of ``tier`` shipped with the package, or None if it is absent."""
    path = POLICY_FILES[tier]
    if not path.exists():
        return None
    return AutoPolicy.from_json(json.loads(path.read_text()))
