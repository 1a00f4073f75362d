"""Measure what to do with the chroma of a JPEG whose chroma steps are too mild for the chroma
network, on BSDS500 val (never a test set).

A non-IJG file whose chroma table reads milder than any quality the policy runs the chroma
network at (a flat table of 10s reads q95) was passed through. The network at the mildest quality
the policy runs it at (q90 for 4:2:0) helps on average but can ruin an image; this study splits
its change into the part each chroma sample holds (what the file quantised) and the part finer
than a sample (its upsampling; :func:`arcnn.frequency_mask.mask_chroma_change`), and measures,
per table, mean and worst-image RGB gain over the input with luma as auto restores it:

* ``luma only``: chroma passes through (before);
* ``whole``: the network's whole change;
* ``masked``: the upsampling, plus the sampled part at the frequencies whose file step is at
  least ``--share`` times the condition's chroma step (default ``CHROMA_KEEP_SHARE``: what auto
  does, up to ``UPSAMPLING_MAX_QUALITY``);
* ``upsampling``: the part finer than a sample alone.

Full-chroma ground truth, the same table for luma and chroma.

    python -m training.studies.chroma_fallback ../shared/data/BSDS500/val --images 40
    python -m training.studies.chroma_fallback ../shared/data/BSDS500/val --images 40 --share 1.25
    python -m training.studies.chroma_fallback ../shared/data/BSDS500/val --images 40 --tier fast
    python -m training.studies.chroma_fallback ../shared/data/BSDS500/val --images 40 --tier fast --chroma-model colour --condition 90
    python -m training.studies.chroma_fallback ../shared/data/BSDS500/val --images 40 --subsampling 0 --condition 80
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcnn.colour import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb_uint8
from arcnn.evaluation import encoded, rgb_psnr
from arcnn.frequency_mask import CHROMA_KEEP_SHARE, mask_chroma_change
from arcnn.images import decode_image, list_images
from arcnn.quality import STD_CHROMA, scaled_table
from arcnn.reading import chroma_table_quality
from arcnn.restoration import PASSTHROUGH, Restorer
from training.colour_data import full_chroma
from training.studies.history_policy import ramp_table

TABLES = {**{f"flat ({s})": [s] * 64 for s in (3, 4, 6, 7, 8, 9, 10, 12)},
          **{f"ramp ({s})": ramp_table(s) for s in (6, 7, 8)}}
"""Tables whose chroma reads q94-q99."""


def gains(restorer: Restorer, truth: Image.Image, table: list[int], condition: int, subsampling: int,
          share: float = CHROMA_KEEP_SHARE, chroma_model: str | None = None) -> dict:
    """{variant: RGB gain over the input} for one image."""
    decoded = decode_image(encoded(truth, "JPEG", qtables=[table, table], subsampling=subsampling), 10**9)
    ref, rgb = np.asarray(truth), np.asarray(decoded.convert("RGB"))
    base = rgb_psnr(ref, rgb)
    choice = restorer.choose(decoded)
    ycc = rgb_to_ycbcr_planes(rgb)
    whole = restorer.restore_chroma(ycc, (condition, subsampling > 0), chroma_model or choice.chroma_model)
    if choice.luma != PASSTHROUGH:
        restorer.restore_luma_choice(choice, ycc[0])
    scale = (2, 2) if subsampling == 2 else (1, 1)
    keep = (np.asarray(table) >= share * scaled_table(STD_CHROMA, condition)).reshape(8, 8)
    masked, upsampling = whole.copy(), whole.copy()
    mask_chroma_change(ycc[1:], masked, keep, scale)
    mask_chroma_change(ycc[1:], upsampling, np.zeros((8, 8), dtype=bool), scale)
    variants = {"luma only": ycc[1:], "whole": whole, "masked": masked, "upsampling": upsampling}
    return {name: rgb_psnr(ref, ycbcr_planes_to_rgb_uint8(np.concatenate([ycc[:1], planes]))) - base
            for name, planes in variants.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--tier", default="standard")
    parser.add_argument("--condition", type=int, default=None,
                        help="the chroma network's quality (default: the tier's mildest, 90 / 85)")
    parser.add_argument("--share", type=float, default=CHROMA_KEEP_SHARE,
                        help="masked: the file's step over the condition's at which a frequency is kept")
    parser.add_argument("--chroma-model", default=None, help="a chroma network other than the tier's")
    parser.add_argument("--subsampling", type=int, choices=(0, 2), default=2, help="2: 4:2:0, 0: 4:4:4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    restorer = Restorer("auto", "cpu", precision="fp32", tier=args.tier)
    condition = args.condition or (90 if args.tier == "standard" else 85)
    truths = []
    for path in list_images([args.val])[: args.images]:
        with Image.open(path) as img:
            truths.append(full_chroma(img))
    print(f"{args.val}, {len(truths)} images, tier {args.tier}, chroma network "
          f"{args.chroma_model or restorer.chroma_model} at q{condition}, "
          f"{'4:2:0' if args.subsampling == 2 else '4:4:4'}, masked at {args.share}x the condition's steps: "
          "mean (worst image) RGB gain\n")
    print("| table | chroma read | luma only (before) | whole | masked | upsampling |\n|---|---|---|---|---|---|")
    for name, table in TABLES.items():
        rows = [gains(restorer, truth, table, condition, args.subsampling, args.share, args.chroma_model)
                for truth in truths]
        cells = " | ".join(f"{np.mean([r[k] for r in rows]):+.3f} ({np.min([r[k] for r in rows]):+.3f})"
                           for k in rows[0])
        print(f"| {name} | q{chroma_table_quality(table)} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
