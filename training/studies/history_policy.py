"""Measure the choices ``auto`` makes from an input's history, on BSDS500 val (never a test set).

Three questions, each answered per degradation level with the mean and the worst image's RGB
PSNR gain over the input (the same no-worse rule as the JPEG policy: no image more than 0.05 dB
worse), on BSDS500 val reduced 2x2 (full-resolution chroma ground truth, as the chroma network
was trained; BSDS500's own JPEGs carry 4:2:0 chroma):

1. **WebP**: the nearest ``webp-qN`` model against passthrough, at each WebP quality: where the
   models stop helping is :data:`arcnn.restoration.WEBP_MAX_QUALITY`.
2. **JPEG histories read from pixels** (a PNG of a JPEG: no tables, no subsampling flag): the
   IJG model of the quality read, with and without the chroma network (conditioned on the
   quality read, 4:2:0 assumed).
3. **Tables of other shapes** (flat, ramp and Annex K-shaped tables at fixed strengths, then
   random flat / ramp / jittered tables of a strength range, ``training.degradations``): what auto applies (the JPEG policy at the strongest IJG quality
   nowhere coarser than the tables), its luminance model alone, and any ``--models`` given (the
   ``jpeg-tables-sN`` models of training/configs/ were measured so, and lost to auto's choice).

    python -m training.studies.history_policy ../shared/data/BSDS500/val
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.evaluation import encoded, rgb_psnr
from arcnn.images import codec_roundtrip, decode_image, list_images
from arcnn.model_names import nearest_quality_model, webp_models
from arcnn.registry import bundled
from arcnn.restoration import PASSTHROUGH, Choice, Restorer
from training.colour_data import full_chroma
from training.degradations import random_table


def _gains(restorer: Restorer, truths: list[Image.Image], make, choices: dict[str, object]) -> dict:
    """{choice name: (mean gain, worst gain)}; ``choices`` maps a name to a Choice or a function
    of the decoded image giving one."""
    rows = {name: [] for name in choices}
    for truth in truths:
        decoded = decode_image(make(truth), 10**9)
        ref = np.asarray(truth)
        base = rgb_psnr(ref, np.asarray(decoded.convert("RGB")))
        for name, choice in choices.items():
            picked = choice(decoded) if callable(choice) else choice
            out = np.asarray(restorer.restore(decoded, picked).convert("RGB"))
            rows[name].append(rgb_psnr(ref, out) - base)
    return {name: (float(np.mean(g)), float(np.min(g))) for name, g in rows.items()}


def _fmt(result: dict) -> str:
    return " | ".join(f"{mean:+.3f} ({worst:+.3f})" for mean, worst in result.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--only", choices=("webp", "png", "tables"), default=None, help="measure one part")
    parser.add_argument("--models", nargs="*", default=[],
                        help="tables part: models (names or .safetensors paths) to compare with auto's choice, "
                             "e.g. a jpeg-tables-sN trained from training/configs/")
    args = parser.parse_args()
    truths = []
    for path in list_images([args.val])[: args.images]:
        with Image.open(path) as img:
            truths.append(full_chroma(img))
    restorer = Restorer("auto", "cpu", precision="fp32")
    names = list(bundled())
    webp = [name for _, name in sorted(webp_models(names).items())]

    parts = {args.only} if args.only else {"webp", "png", "tables"}
    if "webp" in parts:
        webp_part(restorer, truths, webp)
    if "png" in parts:
        png_part(restorer, truths, names)
    if "tables" in parts:
        tables_part(restorer, truths, names, args.models)


def webp_part(restorer: Restorer, truths: list[Image.Image], webp_models: list[str]) -> None:
    print("| WebP quality | " + " | ".join(webp_models) + " | mean (worst) gain |")
    print("|---|" + "---|" * len(webp_models) + "---|")
    for quality in (10, 20, 30, 40, 50, 60, 70, 80, 90):
        result = _gains(restorer, truths, lambda t, q=quality: encoded(t, "WEBP", quality=q),
                        {m: Choice(m) for m in webp_models})
        print(f"| {quality} | {_fmt(result)} | |")



def png_part(restorer: Restorer, truths: list[Image.Image], names: list[str]) -> None:
    print("\n| PNG of a JPEG at | luma only | luma + chroma network |")
    print("|---|---|---|")
    for quality in (10, 30, 50, 70, 80, 90):
        model = nearest_quality_model(quality, names) or PASSTHROUGH

        def png(t: Image.Image, q: int = quality) -> bytes:
            return encoded(codec_roundtrip(t, "JPEG", quality=q), "PNG")

        result = _gains(restorer, truths, png, {"luma": Choice(model), "both": Choice(model, (quality, True))})
        print(f"| q{quality} ({model}) | {_fmt(result)} |")



ANNEX_K_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]


def named_tables() -> dict[str, list[int]]:
    """Tables of other shapes at fixed strengths: flat (every step s), a ramp from s/2 at DC to
    2.5 s at (7,7), and Annex K's shape scaled so that its DC step is s."""
    tables = {f"flat ({s})": [s] * 64 for s in (10, 12, 16, 24, 32)}
    tables.update({f"ramp ({s})": [max(1, round(s * (0.5 + (f // 8 + f % 8) / 7))) for f in range(64)]
                   for s in (8, 16, 24)})
    tables.update({f"Annex K shape ({s})": [max(1, round(v * s / 16)) for v in ANNEX_K_LUMA] for s in (4, 8)})
    return tables


def tables_part(restorer: Restorer, truths: list[Image.Image], names: list[str], extra: list[str]) -> None:
    def luma_alone(decoded: Image.Image) -> Choice:
        return Choice(restorer.choose(decoded).luma)

    print("\n| table (same for luma and chroma), 4:2:0 | quality read | auto: its choice, mean (worst) gain | "
          "its luma model alone |\n|---|---|---|---|")
    for name, table in named_tables().items():
        def make(t: Image.Image, table: list[int] = table) -> bytes:
            return encoded(t, "JPEG", qtables=[table, table], subsampling=2)

        choice = restorer.choose(decode_image(make(truths[0]), 10**9))
        result = _gains(restorer, truths, make, {"auto": restorer.choose, "luma": luma_alone})
        print(f"| {name} | q{choice.reading.quality} | {choice.label}: {_fmt(result)} |")

    print("\n| random tables, strength | auto (the policy at the equivalent quality) | its luma model alone | "
          + " | ".join(extra) + (" |" if extra else "") + "\n|---|---|---|" + "---|" * len(extra))
    for low, high in ((2, 3), (3, 6), (6, 12), (12, 24), (24, 48)):
        rng = random.Random(low)

        def tables(t: Image.Image) -> bytes:
            table = random_table(rng, low, high)
            return encoded(t, "JPEG", qtables=[table, table], subsampling=2)

        choices = {"auto": restorer.choose, "luma": luma_alone, **{m: Choice(m) for m in extra}}
        print(f"| {low}-{high} | {_fmt(_gains(restorer, truths, tables, choices))} |")


if __name__ == "__main__":
    main()
