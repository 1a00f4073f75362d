"""Regenerate the bundled sample images: synthetic scenes saved as low-quality JPEGs.

The samples are drawn here rather than taken from a research data set (those may not be
redistributed): smooth gradients show blocking, hard edges and text show ringing, a texture
shows blur. Run ``python samples/make_samples.py`` to rebuild them bit for bit.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([120 + 100 * np.sin(3 * xx + seed), 110 + 90 * yy, 140 + 80 * np.cos(2 * yy + xx)], -1)
    texture = rng.normal(0, 12, (h // 4, w // 4, 1)).repeat(4, 0).repeat(4, 1)
    img = Image.fromarray(np.clip(base + texture * (xx[..., None] > 0.5), 0, 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 60), rng.integers(0, h - 60)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x0, y0, x0 + rng.integers(20, 60), y0 + rng.integers(20, 60)], fill=colour)
    draw.rectangle([10, h - 50, w - 10, h - 10], fill=(250, 250, 245))
    draw.text((20, h - 42), f"arcnn sample {seed}: JPEG artifacts", fill=(10, 10, 10))
    draw.line([(0, 0), (w, h)], fill=(30, 30, 30), width=2)
    return img


if __name__ == "__main__":
    for seed, quality in [(1, 10), (2, 20), (3, 30)]:
        scene(seed).save(HERE / f"scene{seed}-q{quality}.jpg", quality=quality)
    scene(4).convert("L").save(HERE / "gray-q10.jpg", quality=10)
