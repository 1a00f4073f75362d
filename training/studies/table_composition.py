"""Measure how many coarser models a JPEG of non-IJG tables should draw on, by frequency, on
BSDS500 val (never a test set).

Where the policy's model fits every frequency of a file's table (its IJG steps nowhere coarser)
the file may still be much coarser than it at some frequencies: a flat table of 24s is q90's
step at (7,7) and eight times it at DC. :func:`arcnn.frequency_mask.coarser_parts` gives such
frequencies to the next lower-quality models on the grid; this study measures auto's mean and
worst-image RGB gain with 0 (the policy's model alone) to ``--depths`` of them, on the named
tables of :mod:`training.studies.history_policy` and on random flat / ramp / jittered Annex K
tables of each strength range (``training.degradations.random_table``), full chroma ground
truth, same table for luma and chroma, 4:2:0. ``auto`` is everything else as the product does
it (chroma network, masks).

    python -m training.studies.table_composition ../shared/data/BSDS500/val --images 40
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.evaluation import encoded, rgb_psnr
from arcnn.frequency_mask import coarser_parts, model_quality
from arcnn.images import decode_image, list_images
from arcnn.model_names import quality_models
from arcnn.registry import bundled
from arcnn.restoration import Restorer
from training.colour_data import full_chroma
from training.degradations import random_table
from training.studies.history_policy import named_tables

STRENGTHS = ((3, 6), (6, 12), (12, 24), (24, 48))
"""Random-table strength ranges (geometric mean step over the 15 lowest AC frequencies)."""


def gains(restorer: Restorer, truths: list[Image.Image], tables, depths: list[int]) -> dict[int, list[float]]:
    """{depth: per-image RGB gain}; ``tables`` gives each image's table (a list, or a function
    of the image's index)."""
    models = quality_models(list(bundled()), restorer.tier)
    out = {d: [] for d in depths}
    for i, truth in enumerate(truths):
        table = tables(i) if callable(tables) else tables
        decoded = decode_image(encoded(truth, "JPEG", qtables=[table, table], subsampling=2), 10**9)
        ref = np.asarray(truth)
        base = rgb_psnr(ref, np.asarray(decoded.convert("RGB")))
        choice = restorer.choose(decoded)
        quality = model_quality(choice.luma)
        # as the restorer does: beside a model the all-64 rule chose, never the masked fallback
        eligible = quality is not None and choice.mask is None and choice.reading.table is not None
        for d in depths:
            parts = coarser_parts(choice.reading.table, quality, models, d) if eligible else ()
            restored = restorer.restore(decoded, replace(choice, parts=parts))
            out[d].append(rgb_psnr(ref, np.asarray(restored.convert("RGB"))) - base)
    return out


def _row(label: str, result: dict[int, list[float]]) -> str:
    cells = " | ".join(f"{np.mean(g):+.3f} ({np.min(g):+.3f})" for g in result.values())
    return f"| {label} | {cells} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--depths", type=int, default=3, help="measure 0 .. this many coarser models")
    args = parser.parse_args()
    truths = []
    for path in list_images([args.val])[: args.images]:
        with Image.open(path) as img:
            truths.append(full_chroma(img))
    restorer = Restorer("auto", "cpu", precision="fp32")
    depths = list(range(args.depths + 1))
    print(f"{len(truths)} images of {args.val}; mean (worst image) RGB gain of auto with 0..{args.depths} coarser models\n")
    print("| table | " + " | ".join(f"{d} coarser" for d in depths) + " |")
    print("|---|" + "---|" * len(depths))
    for name, table in named_tables().items():
        print(_row(name, gains(restorer, truths, table, depths)), flush=True)
    for low, high in STRENGTHS:
        rng = random.Random(low * 1000 + high)
        drawn = [random_table(rng, low, high) for _ in truths]
        print(_row(f"random, strength {low}-{high}", gains(restorer, truths, lambda i: drawn[i], depths)), flush=True)


if __name__ == "__main__":
    main()
