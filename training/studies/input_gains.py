"""What each model does to each kind of input's luminance (JPEG, WebP, an untouched image).

This is the measurement behind ``ARCNN_DEFAULT_MODEL`` being passthrough: inputs without JPEG
tables (WebP, PNG) have no quality to go by, and it shows every bundled model losing on some of
them. The per-quality JPEG policy is measured on colour by :mod:`training.studies.auto_policy`.

For a folder of ground-truth images, each image's BT.601 Y plane is degraded several ways (JPEG at
a range of qualities, lossy WebP, nothing at all) and restored by every candidate model; the
table gives mean PSNRs and each model's gain over the degraded input (negative: the model made it
worse; an untouched input has infinite PSNR, so that row gives the models' PSNRs alone).
Measured on BSDS500 *val*; test sets (LIVE1, Kodak24) only confirm it.

``python -m training.studies.input_gains ../shared/data/BSDS500/val --images 30``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcnn.colour import to_uint8
from arcnn.images import codec_roundtrip, list_images, studio_y
from arcnn.metrics import psnr
from arcnn.model_names import BLIND_MODEL, quality_models
from arcnn.registry import bundled, load_named
from arcnn.tiling import restore_plane

DEGRADATIONS = [*(("jpeg", q) for q in (10, 20, 30, 40, 50, 60, 70, 80, 90)),
                *(("webp", q) for q in (25, 50, 75, 90)), ("none", 0)]


def degrade(y: np.ndarray, kind: str, quality: int) -> np.ndarray:
    if kind == "none":
        return y
    return np.asarray(codec_roundtrip(Image.fromarray(y), kind.upper(), quality=quality).convert("L"))


def parse_input(key: str) -> tuple[str, int]:
    """``"jpeg-50"`` -> ("jpeg", 50); ``"none"`` -> ("none", 0)."""
    kind, _, quality = key.partition("-")
    if kind == "none":
        return "none", 0
    if kind not in ("jpeg", "webp") or not quality.isdigit():
        raise ValueError(f"bad input {key!r}: use jpeg-Q, webp-Q or none")
    return kind, int(quality)


def candidate_models() -> list[str]:
    """Every bundled standard model (jpeg-qN, jpeg-any), not the intermediate stages."""
    names = list(bundled())
    standard = {BLIND_MODEL, *quality_models(names).values()}
    return [n for n in names if n in standard]


def gains(planes: list[np.ndarray], models: list[str], degradations=DEGRADATIONS) -> dict[str, dict]:
    """{"jpeg-30": {"input": psnr, "jpeg-q20": psnr, ...}, ...}: mean PSNRs (dB) over ``planes``."""
    nets = {name: load_named(name)[0].eval() for name in models}
    table: dict[str, dict] = {}
    for kind, quality in degradations:
        pairs = [(y, degrade(y, kind, quality)) for y in planes]
        row = {"input": float(np.mean([psnr(c, d) for c, d in pairs]))}
        for name, net in nets.items():
            with torch.no_grad():
                row[name] = float(np.mean([psnr(c, to_uint8(restore_plane(net, d))) for c, d in pairs]))
        table[f"{kind}-{quality}" if kind != "none" else "none"] = row
    return table


def markdown(table: dict[str, dict]) -> str:
    models = [k for k in next(iter(table.values())) if k != "input"]
    lines = ["| input | input PSNR | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
    for key, row in table.items():
        cells = [f"{row[m]:.2f} ({row[m] - row['input']:+.2f})" if np.isfinite(row["input"])
                 else f"{row[m]:.2f}" for m in models]
        lines.append(f"| {key} | {row['input']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--images", type=int, default=None, help="use the first N images")
    parser.add_argument("--models", default=None, help="comma-separated (default: every jpeg-qN and jpeg-any)")
    parser.add_argument("--inputs", default=None,
                        help="comma-separated, e.g. jpeg-50,webp-25,none (default: JPEG 10-90, WebP 25-90, none)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    paths = list_images([args.folder])[: args.images]
    planes = []
    for path in paths:
        with Image.open(path) as img:
            planes.append(studio_y(img))
    models = args.models.split(",") if args.models else candidate_models()
    inputs = DEGRADATIONS if not args.inputs else [parse_input(k) for k in args.inputs.split(",")]
    table = gains(planes, models, inputs)
    print(f"{args.folder} ({len(planes)} images): PSNR on Y, dB (gain over the input)\n")
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder), "images": len(planes), "gains": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
