"""Colour designs side by side: what each way of restoring a colour JPEG gains, and what it costs.

Each ground-truth image (BSDS500 val averaged over 2x2 blocks, so its chroma is full resolution)
is saved as a colour JPEG (libjpeg's default 4:2:0) at each quality and restored by:

- ``Y full``: the nearest ``jpeg-qN`` on the JFIF (full-range) Y, chroma passed through: the
  product until the chroma network;
- ``Y studio``: the same model on Y mapped into the studio range it learned on, and back;
- ``Y + same on CbCr``: ``Y studio`` and the same luminance model run on Cb and Cr too;
- ``chroma net``: Y passed through, Cb/Cr by the chroma network;
- ``Y studio + chroma net``: both, the shipped design.

It prints, per quality, each design's mean RGB PSNR gain over the JPEG and the worst image's
gain, and each design's multiply-adds per pixel.

    python -m training.studies.colour_designs ../shared/data/BSDS500/val --images 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.colour import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb_uint8
from arcnn.evaluation import decode_as_product, jpeg_bytes, rgb_psnr
from arcnn.images import list_images
from arcnn.model_names import CHROMA_MODEL, nearest_quality_model
from arcnn.registry import bundled
from arcnn.restoration import Restorer
from arcnn.tiling import restore_plane
from training.colour_data import full_chroma

DESIGNS = ("Y full", "Y studio", "Y + same on CbCr", "chroma net", "Y studio + chroma net")
QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def designs(restorer: Restorer, model: str, ycc: np.ndarray, conditions: tuple[int, bool]) -> dict[str, np.ndarray]:
    """Every design's restored YCbCr image (3 x H x W planes, float) from YCbCr planes ``ycc``."""
    net = restorer.model(model)
    y, cb, cr = ycc
    y_full = restore_plane(net, y)
    y_studio = restorer.restore_luma(model, y)
    chroma = restorer.restore_chroma(ycc, conditions)
    return {
        "Y full": np.stack([y_full, cb, cr]),
        "Y studio": np.stack([y_studio, cb, cr]),
        "Y + same on CbCr": np.stack([y_studio, restore_plane(net, cb), restore_plane(net, cr)]),
        "chroma net": np.stack([y, *chroma]),
        "Y studio + chroma net": np.stack([y_studio, *chroma]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--qualities", default=",".join(map(str, QUALITIES)))
    args = parser.parse_args()
    truths = []
    for path in list_images([args.folder])[: args.images]:
        with Image.open(path) as img:
            truths.append(full_chroma(img))
    restorer = Restorer("auto", device="cpu", precision="fp32")  # figures must not depend on the CPU
    names = list(bundled())
    print(f"{args.folder}, first {len(truths)} images averaged over 2x2 blocks, colour JPEG 4:2:0: "
          "RGB PSNR gain over the JPEG, dB, mean / worst image\n")
    print("| quality | JPEG RGB PSNR | luma model | " + " | ".join(DESIGNS) + " |")
    print("|---" * (len(DESIGNS) + 3) + "|")
    for q in map(int, args.qualities.split(",")):
        model = nearest_quality_model(q, names)
        gains: dict[str, list[float]] = {d: [] for d in DESIGNS}
        inputs = []
        for truth in truths:
            img = decode_as_product(jpeg_bytes(truth, q))
            ref, decoded = np.asarray(truth), np.asarray(img.convert("RGB"))
            base = rgb_psnr(ref, decoded)
            inputs.append(base)
            outs = designs(restorer, model, rgb_to_ycbcr_planes(decoded), (q, True))
            for d, out in outs.items():
                gains[d].append(rgb_psnr(ref, ycbcr_planes_to_rgb_uint8(out)) - base)
        cells = " | ".join(f"{np.mean(g):+.3f} / {min(g):+.2f}" for g in gains.values())
        print(f"| q{q} | {np.mean(inputs):.2f} | {model} | {cells} |", flush=True)
    luma = restorer.model(nearest_quality_model(10, names)).macs_per_pixel
    chroma = restorer.model(CHROMA_MODEL).macs_per_pixel
    print(f"\nmultiply-adds per pixel: Y {luma} (jpeg-q10; jpeg-q20 and up: "
          f"{restorer.model(nearest_quality_model(40, names)).macs_per_pixel}), "
          f"Y + same on CbCr 3x that, chroma net {chroma}")


if __name__ == "__main__":
    main()
