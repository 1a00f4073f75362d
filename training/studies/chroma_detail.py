"""How much chroma detail a set of ground-truth images holds above the 4:2:0 grid.

Each image's Cb and Cr planes go through a 4:2:0 round trip (2x2 box average, then bilinear
upsampling back, as a decoder would) and the PSNR of that round trip against the planes
themselves is reported: near-infinite for images whose chroma was already subsampled (they
lose nothing), lower the more full-resolution chroma detail there is. It is the check that a
colour ground truth really has full-resolution chroma before a chroma network learns from it.

    python -m training.studies.chroma_detail ../shared/data/BSDS500/train ../shared/data/Kodak24 --half
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.colour import rgb_to_ycbcr
from arcnn.images import list_images
from arcnn.metrics import psnr
from training.colour_data import full_chroma


def round_trip_psnr(rgb: Image.Image) -> float:
    """Mean PSNR (Cb, Cr) of a 4:2:0 round trip of ``rgb``'s chroma, in dB."""
    w, h = rgb.width // 2 * 2, rgb.height // 2 * 2
    ycc = rgb_to_ycbcr(np.asarray(rgb.convert("RGB").crop((0, 0, w, h))))
    scores = []
    for c in (1, 2):
        plane = Image.fromarray(ycc[..., c].astype(np.float32), "F")
        back = plane.resize((w // 2, h // 2), Image.Resampling.BOX).resize((w, h), Image.Resampling.BILINEAR)
        scores.append(psnr(ycc[..., c], np.asarray(back, dtype=np.float64)))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--images", type=int, default=50, help="first N images of each folder")
    parser.add_argument("--half", action="store_true", help="also measure each set averaged over 2x2 blocks")
    args = parser.parse_args()
    print("| images | 4:2:0 round-trip chroma PSNR (dB, mean / min) |\n|---|---|")
    for folder in args.folders:
        paths = list_images([folder])[: args.images]
        for half in (False, True) if args.half else (False,):
            scores = []
            for path in paths:
                with Image.open(path) as img:
                    scores.append(round_trip_psnr(full_chroma(img) if half else img.convert("RGB")))
            name = f"{folder.name}{' (2x2 averaged)' if half else ''}"
            print(f"| {name} ({len(paths)}) | {np.mean(scores):.2f} / {np.min(scores):.2f} |")


if __name__ == "__main__":
    main()
