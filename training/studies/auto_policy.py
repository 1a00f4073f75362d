"""Measure what ``--model auto`` should do with a colour JPEG of each quality, and write the policy.

For every quality of a grid (q5-q95) and both chroma subsamplings (4:2:0, 4:4:4), each
ground-truth image is saved as a colour JPEG, decoded as the product decodes it, and restored
every way auto could: each luminance model near the quality (the bundled ``jpeg-qN`` at or
below it and at or above it) or none, each with and without the chroma network. Double saves
(q90 then q60, q75 then q50, with and without a 3-pixel crop between the saves) join the cell of
their last save, since that is all a decoder can see.

For each (quality, subsampling) the choice (luminance model, chroma network on or off) is the
one with the best mean RGB PSNR gain among those that make *no* image of the cell more than
``--max-loss`` dB worse; passthrough (gain 0) is always allowed, so the policy can never
choose something measured to ruin a validation photo. Ground truth is BSDS500 *val* averaged
over 2x2 blocks (full-resolution chroma, as the chroma network was trained); test sets (LIVE1,
Kodak24) only confirm the policy afterwards (``arcnn eval --protocol bucket``).

    python -m training.studies.auto_policy ../shared/data/BSDS500/val --write arcnn/auto_policy.json \\
        --json docs/auto-policy.json

The fast tier has its own policy, measured the same way with its own models (``fast-arcnn-qN``
and ``colour-fast``; in the record, ``+colour`` marks the tier's chroma network)::

    python -m training.studies.auto_policy ../shared/data/BSDS500/val --tier fast \
        --write arcnn/auto_policy-fast.json --json docs/auto-policy-fast.json

``--decide-from docs/auto-policy.json`` makes the decision again from saved measurements (each
way's mean and worst gain per cell) without measuring, e.g. with another ``--max-loss``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from arcnn.colour import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb_uint8
from arcnn.evaluation import BucketRow, decode_as_product, rgb_psnr
from arcnn.images import list_images
from arcnn.model_names import CHROMA_MODEL, CHROMA_MODELS, TIERS, quality_models
from arcnn.policy import AutoPolicy
from arcnn.registry import bundled
from arcnn.restoration import PASSTHROUGH, Restorer
from training.colour_data import full_chroma

GRID = (5, *range(10, 100, 5))
SUBSAMPLINGS = {"4:2:0": 2, "4:4:4": 0}
DOUBLES = (BucketRow("q90 > q60", ((90, 2), (60, 2))), BucketRow("q75 > q50", ((75, 2), (50, 2))),
           BucketRow("q90 > crop 3 > q60", ((90, 2), (60, 2)), shift=3),
           BucketRow("q75 > crop 3 > q50", ((75, 2), (50, 2)), shift=3))


def candidates(quality: int, models: dict[int, str]) -> list[str]:
    """Passthrough and the models at or just below and at or just above ``quality``."""
    below = [q for q in models if q <= quality]
    above = [q for q in models if q >= quality]
    picks = {max(below)} if below else set()
    picks |= {min(above)} if above else set()
    return [PASSTHROUGH, *(models[q] for q in sorted(picks))]


@dataclass
class Cell:
    """Mean and worst-image RGB PSNR gain of every (luma, chroma on/off) way of restoring one
    kind of input (a quality and subsampling)."""

    gains: dict[tuple[str, bool], tuple[float, float]]

    @classmethod
    def from_samples(cls, samples: dict[tuple[str, bool], list[float]]) -> "Cell":
        return cls({way: (float(np.mean(g)), float(min(g))) for way, g in samples.items() if g})

    def best(self, max_loss: float) -> tuple[str, bool, float, float]:
        """(luma, chroma on?, mean, worst) of the admissible way with the best mean gain."""
        admissible = [(m, on, mean, worst) for (m, on), (mean, worst) in self.gains.items() if worst >= -max_loss]
        return max(admissible, key=lambda w: w[2])


def measure(truths: list[Image.Image], rows: list[tuple[BucketRow, int, bool]], luma: list[str],
            restorer: Restorer) -> Cell:
    """Gains over ``truths`` for every row (a degradation ending at ``quality``, ``subsampled``)."""
    samples: dict[tuple[str, bool], list[float]] = {(m, on): [] for m in luma for on in (False, True)}
    for row, quality, subsampled in rows:
        for truth in truths:
            data, reference = row.degrade(truth)
            img = decode_as_product(data)
            ref, decoded = np.asarray(reference), np.asarray(img.convert("RGB"))
            base = rgb_psnr(ref, decoded)
            ycc = rgb_to_ycbcr_planes(decoded)
            chroma = restorer.restore_chroma(ycc, (img.info["jpeg_quality"], img.info["jpeg_subsampled"]))
            for m in luma:
                y = ycc[0] if m == PASSTHROUGH else restorer.restore_luma(m, ycc[0])
                for on in (False, True):
                    if m == PASSTHROUGH and not on:
                        samples[(m, on)].append(0.0)  # the file is left as it is
                        continue
                    out = np.stack([y, *(chroma if on else ycc[1:])])
                    samples[(m, on)].append(rgb_psnr(ref, ycbcr_planes_to_rgb_uint8(out)) - base)
    return Cell.from_samples(samples)


def decide(cells: dict[tuple[int, str], Cell], max_loss: float) -> tuple[AutoPolicy, dict]:
    """The policy, and for the record every way's mean / worst gain in every cell."""
    policy = AutoPolicy({s: {} for s in SUBSAMPLINGS}, {s: {} for s in SUBSAMPLINGS})
    record: dict[str, dict] = {}
    for (q, s), cell in sorted(cells.items()):
        luma, on, _, _ = cell.best(max_loss)
        policy.luma[s][q], policy.chroma[s][q] = luma, on
        record.setdefault(str(q), {})[s] = {f"{m}{'+colour' if c else ''}": {"mean": round(mean, 4),
                                                                            "worst": round(worst, 4)}
                                            for (m, c), (mean, worst) in cell.gains.items()}
    return policy, record


def cells_from_record(record: dict) -> dict[tuple[int, str], Cell]:
    """The cells of a saved ``--json`` record."""
    cells = {}
    for q, by_subsampling in record.items():
        for s, ways in by_subsampling.items():
            cells[(int(q), s)] = Cell({(k.removesuffix("+colour"), k.endswith("+colour")): (v["mean"], v["worst"])
                                       for k, v in ways.items()})
    return cells


def markdown(policy: AutoPolicy, record: dict, images: str, chroma_model: str = CHROMA_MODEL) -> str:
    """The policy with, per quality and subsampling, the chosen way's mean and worst-image RGB
    gain, and the best luminance model alone (no chroma network) for comparison."""
    lines = [f"RGB PSNR gain over the JPEG (dB) on {images}, mean / worst image; the 4:2:0 cells at "
             "q50 and q60 include the double saves.", "",
             "| q | 4:2:0: applied | mean / worst | 4:4:4: applied | mean / worst | "
             "4:2:0, best luma model alone |", "|---|---|---|---|---|---|"]
    for q in sorted(int(k) for k in record):
        cells = []
        for s in SUBSAMPLINGS:
            on = policy.chroma[s][q]
            key = f"{policy.luma[s][q]}{'+colour' if on else ''}"
            g = record[str(q)][s][key]
            label = chroma_model if key == "passthrough+colour" else key.replace("+colour", f"+{chroma_model}")
            cells.append(f"{label} | {g['mean']:+.3f} / {g['worst']:+.3f}")
        alone = {k: v for k, v in record[str(q)]["4:2:0"].items() if k != PASSTHROUGH and "+" not in k}
        best = max(alone, key=lambda k: alone[k]["mean"]) if alone else None
        ref = f"{best}: {alone[best]['mean']:+.3f} / {alone[best]['worst']:+.3f}" if best else "-"
        lines.append(f"| {q} | {cells[0]} | {cells[1]} | {ref} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", help="ground-truth images (BSDS500/val)")
    parser.add_argument("--tier", choices=TIERS, default="standard",
                        help="model family: standard (jpeg-qN + colour) or fast (fast-arcnn-qN + colour-fast)")
    parser.add_argument("--images", type=int, default=None, help="use the first N images")
    parser.add_argument("--max-loss", type=float, default=0.05, help="dB any one image may lose (default 0.05)")
    parser.add_argument("--write", type=Path, default=None, help="write the policy here (arcnn/auto_policy.json)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measured gain here")
    parser.add_argument("--decide-from", type=Path, default=None,
                        help="decide from a saved --json record instead of measuring")
    args = parser.parse_args()
    if args.decide_from:
        saved = json.loads(args.decide_from.read_text())
        cells, measured_on = cells_from_record(saved["gains"]), saved["measured_on"]
    else:
        if args.folder is None:
            parser.error("give the ground-truth folder, or --decide-from a saved record")
        truths = []
        for path in list_images([args.folder])[: args.images]:
            with Image.open(path) as img:
                truths.append(full_chroma(img))
        measured_on = f"{args.folder} ({len(truths)} images, averaged over 2x2 blocks)"
        models = quality_models(list(bundled()), args.tier)
        restorer = Restorer("auto", device="cpu", tier=args.tier, precision="fp32")  # measured once, used on every CPU
        cells = {}
        for q in tqdm(GRID, desc="qualities"):
            for s, sampling in SUBSAMPLINGS.items():
                rows = [(BucketRow(f"q{q} {s}", ((q, sampling),)), q, sampling != 0)]
                rows += [(d, q, True) for d in DOUBLES if s == "4:2:0" and d.saves[-1][0] == q]
                cells[(q, s)] = measure(truths, rows, candidates(q, models), restorer)
    policy, record = decide(cells, args.max_loss)
    print(markdown(policy, record, measured_on, CHROMA_MODELS[args.tier]))
    command = "python -m training.studies.auto_policy ../shared/data/BSDS500/val" + (
        f" --tier {args.tier}" if args.tier != "standard" else "")
    meta = {"measured_on": measured_on, "max_loss_db": args.max_loss, "command": command}
    if args.write:
        args.write.write_text(json.dumps({**meta, **policy.to_json()}, indent=2) + "\n")
    if args.json:
        args.json.write_text(json.dumps({**meta, "policy": policy.to_json(), "gains": record}, indent=2) + "\n")


if __name__ == "__main__":
    main()
