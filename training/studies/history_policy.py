"""Measure the choices ``auto`` makes from an input's history, on BSDS500 val (never a test set).

Three questions, each answered per degradation level with the mean and the worst image's RGB
PSNR gain over the input (the same no-worse rule as the JPEG policy: no image more than 0.05 dB
worse), on BSDS500 val reduced 2x2 (full-resolution chroma ground truth, as the chroma network
was trained; BSDS500's own JPEGs carry 4:2:0 chroma):

1. **WebP**: each ``webp-qN`` model or passthrough for luma, with the chroma network passing
   through or conditioned on a JPEG quality, at each WebP quality: the picks are
   :data:`arcnn.restoration.WEBP_POLICY` (luma) and :data:`arcnn.restoration.WEBP_CHROMA`.
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

from arcnn.colour import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb_uint8
from arcnn.evaluation import encoded, rgb_psnr
from arcnn.images import codec_roundtrip, decode_image, list_images
from arcnn.model_names import CHROMA_MODEL, nearest_quality_model, webp_models
from arcnn.reading import WEBP_NEUTRAL_TOLERANCE
from arcnn.registry import bundled
from arcnn.restoration import PASSTHROUGH, Choice, Restorer, neutral_pixels
from training.colour_data import full_chroma
from training.degradations import random_table


MAX_LOSS_DB = 0.05
"""The no-worse rule: a choice may make no image more than this much worse."""


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


WEBP_CHROMA_CONDITIONS = (None, 80, 90, 95)
"""The chroma network's options for a WebP: passthrough, or conditioned on these JPEG qualities."""


def _webp_gains(restorer: Restorer, truths: list[Image.Image], quality: int, lumas: list[str]) -> dict:
    """{(luma, chroma condition): (mean gain, worst gain)} for WebP at ``quality``. Luma and
    chroma are restored once per choice and combined as the product's colour path does (the
    chroma network is guided by the decoded luma, so the two are independent), neutral pixels
    kept neutral."""
    gains: dict[tuple[str, int | None], list[float]] = {(l, c): [] for l in lumas for c in WEBP_CHROMA_CONDITIONS}
    for truth in truths:
        decoded = decode_image(encoded(truth, "WEBP", quality=quality), 10**9).convert("RGB")
        ref, rgb = np.asarray(truth), np.asarray(decoded)
        base = rgb_psnr(ref, rgb)
        ycc = rgb_to_ycbcr_planes(rgb)
        neutral = neutral_pixels(rgb, WEBP_NEUTRAL_TOLERANCE)
        ys = {l: ycc[0] if l == PASSTHROUGH else restorer.restore_luma(l, ycc[0].copy()) for l in lumas}
        chromas = {c: ycc[1:] if c is None else restorer.restore_chroma(ycc, (c, True), CHROMA_MODEL)
                   for c in WEBP_CHROMA_CONDITIONS}
        for (l, c), row in gains.items():
            if l == PASSTHROUGH and c is None:
                row.append(0.0)
                continue
            planes = np.stack([ys[l], *chromas[c]])
            planes[1][neutral] = planes[2][neutral] = 128.0
            row.append(rgb_psnr(ref, ycbcr_planes_to_rgb_uint8(planes)) - base)
    return {k: (float(np.mean(g)), float(np.min(g))) for k, g in gains.items()}


def webp_part(restorer: Restorer, truths: list[Image.Image], webp_models: list[str]) -> None:
    """Per WebP quality, every luma choice (passthrough or a ``webp-qN`` model) with every chroma
    option; per chroma option the best luma choice under the no-worse rule, and the best of all."""
    lumas = [PASSTHROUGH, *webp_models]
    heads = ["chroma passes through"] + [f"colour at q{c}" for c in WEBP_CHROMA_CONDITIONS[1:]]
    print("| WebP quality | " + " | ".join(heads) + " | auto takes |")
    print("|---|" + "---|" * len(heads) + "---|")
    for quality in (10, 20, 30, 40, 50, 60, 70, 80, 90):
        result = _webp_gains(restorer, truths, quality, lumas)
        cells, best = [], ((PASSTHROUGH, None), (0.0, 0.0))
        for c in WEBP_CHROMA_CONDITIONS:
            safe = {k: v for k, v in result.items() if k[1] == c and v[1] >= -MAX_LOSS_DB}
            if not safe:
                cells.append("none safe")
                continue
            pick = max(safe, key=lambda k: safe[k][0])
            cells.append(f"{pick[0]}: {safe[pick][0]:+.3f} ({safe[pick][1]:+.3f})")
            if safe[pick][0] > best[1][0]:
                best = (pick, safe[pick])
        (luma, c), _ = best
        print(f"| {quality} | " + " | ".join(cells) + f" | {luma}" + ("" if c is None else f" + colour q{c}") + " |",
              flush=True)


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


def ramp_table(s: int) -> list[int]:
    """A ramp of strength ``s`` (natural order): s/2 at DC to 2.5 s at (7,7)."""
    return [max(1, round(s * (0.5 + (f // 8 + f % 8) / 7))) for f in range(64)]


def named_tables() -> dict[str, list[int]]:
    """Tables of other shapes at fixed strengths: flat (every step s), a ramp from s/2 at DC to
    2.5 s at (7,7), and Annex K's shape scaled so that its DC step is s."""
    tables = {f"flat ({s})": [s] * 64 for s in (10, 12, 16, 24, 32)}
    tables.update({f"ramp ({s})": ramp_table(s) for s in (8, 16, 24)})
    tables.update({f"Annex K shape ({s})": [max(1, round(v * s / 16)) for v in ANNEX_K_LUMA] for s in (4, 8)})
    return tables


def tables_part(restorer: Restorer, truths: list[Image.Image], names: list[str], extra: list[str]) -> None:
    def luma_alone(decoded: Image.Image) -> Choice:
        choice = restorer.choose(decoded)
        return Choice(choice.luma, reading=choice.reading, mask=choice.mask)

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
