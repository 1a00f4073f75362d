"""Small synthetic ground-truth folders for training tests (no ../shared/data needed)."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_ground_truth(root: Path, counts: dict[str, int], size: int, seed: int) -> Path:
    """Smooth-plus-noise RGB PNGs, ``counts[split]`` of them in ``root/split``; returns root."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in counts.items():
        (root / split).mkdir()
        for i in range(n):
            base = 128 + 60 * np.sin(xx / (5 + i)) + 40 * np.cos(yy / 7)
            img = np.clip(base[..., None] + rng.normal(0, 5, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / split / f"{i}.png")
    return root
