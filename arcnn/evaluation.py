"""Evaluation protocols: how a model's PSNR / SSIM / PSNR-B figures are produced.

``paper``: ground-truth RGB -> BT.601 studio-range Y rounded to uint8 -> grayscale JPEG at
quality Q (Pillow) -> restore -> metrics on Y. This is the AR-CNN paper's Table 1 protocol;
with it, plain JPEG on LIVE1 at q10 measures 27.77 dB PSNR / 25.33 dB PSNR-B, as published.

``color``: RGB JPEG (4:2:0) at Q -> restore through the colour pipeline -> PSNR on RGB and on Y.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from arcnn.colour import rgb_to_studio_y, to_uint8
from arcnn.images import codec_roundtrip, list_images, studio_y
from arcnn.metrics import all_metrics, psnr
from arcnn.tiling import restore_plane

def mean_metrics(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def evaluate_planes(model: nn.Module | None, clean: list[np.ndarray], degraded: list[np.ndarray],
                    device: str = "cpu", tile: int = 512) -> dict[str, dict[str, float]]:
    """Average metrics of the degraded input and of the restored output against ``clean``."""
    before, after = [], []
    for c, d in zip(clean, degraded):
        before.append(all_metrics(c, d))
        if model is not None:
            restored = to_uint8(restore_plane(model, d, tile=tile, device=device))
            after.append(all_metrics(c, restored))
    result = {"input": mean_metrics(before)}
    if after:
        result["restored"] = mean_metrics(after)
    return result


def paper_protocol(model: nn.Module | None, folder: Path, quality: int, device: str = "cpu",
                   tile: int = 512) -> dict:
    clean, degraded = [], []
    for path in list_images([folder]):
        with Image.open(path) as img:
            y = studio_y(img)
        clean.append(y)
        degraded.append(np.asarray(codec_roundtrip(Image.fromarray(y), "JPEG", quality=quality)))
    return {"protocol": "paper", "images": len(clean), "quality": quality,
            **evaluate_planes(model, clean, degraded, device, tile)}


def color_protocol(restore: Callable[[Image.Image], Image.Image] | None, folder: Path,
                   quality: int) -> dict:
    """RGB JPEG 4:2:0 in; ``restore`` is the product's colour pipeline (None: input only)."""
    before, after = [], []
    for path in list_images([folder]):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        jpeg = codec_roundtrip(rgb, "JPEG", quality=quality, subsampling=2)
        candidates = [("input", jpeg, before)]
        if restore is not None:
            candidates.append(("restored", restore(jpeg), after))
        ref = np.asarray(rgb)
        for _, out, rows in candidates:
            arr = np.asarray(out.convert("RGB"))
            rows.append({
                "psnr_rgb": psnr(ref.reshape(ref.shape[0], -1), arr.reshape(arr.shape[0], -1)),
                "psnr_y": psnr(to_uint8(rgb_to_studio_y(ref)), to_uint8(rgb_to_studio_y(arr))),
            })
    result = {"protocol": "color", "images": len(before), "quality": quality, "input": mean_metrics(before)}
    if after:
        result["restored"] = mean_metrics(after)
    return result
