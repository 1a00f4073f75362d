"""Training pairs: ground-truth luminance and its degraded version, and sub-image sampling.

Images are reduced to BT.601 studio-range Y (as the paper and its evaluation do) and kept in
memory as uint8: BSDS500's 500 images are ~75 MB that way. Degraded copies are made once per
image and *variant* (a blind model gets several qualities per image). Sub-images are cropped at
random positions with random flips and rotations, as tensors ready for the network:
the input window is ``patch + 2 * radius`` wide and the loss sees the centre ``patch`` (valid
convolutions, as in the paper, where 32x32 inputs give 20x20 outputs for the 9-1-5 net).

Augmentation is ``"dihedral"`` (all eight flips and 90-degree rotations) or ``"flips"`` (the four
that keep the axes: identity, horizontal and vertical flips, 180 degrees). A 90-degree rotation
transposes each 8x8 block's spectrum, and JPEG's quantisation tables are not symmetric (the
luminance table quantises the first vertical frequency at 12, the first horizontal at 11), so a
rotated JPEG patch is not a JPEG patch; flips only change signs of coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcnn.images import GREY_Y_MODES, studio_y
from training.degradations import Chain, Resize

def split_geometry(degradation) -> tuple[list, list]:
    """Split a chain into geometric steps (applied to the target too) and lossy steps."""
    steps = list(degradation.steps) if isinstance(degradation, Chain) else [degradation]
    return [s for s in steps if isinstance(s, Resize)], [s for s in steps if not isinstance(s, Resize)]


def make_pair(img: Image.Image, degradation, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """(clean Y, degraded Y) for one ground-truth image.

    ``colour=False`` follows the paper: the Y plane itself is JPEG-compressed as a grayscale
    image. ``colour=True`` degrades the RGB image (as a platform would) and takes Y after.
    """
    geometric, lossy = split_geometry(degradation)
    # A grey image is its own Y, as in arcnn.images.studio_y (and so in arcnn eval): through RGB
    # it would be squeezed into the studio range 16-235.
    clean = img.convert("L" if img.mode in GREY_Y_MODES else "RGB")
    for step in geometric:
        clean = step(clean)
    source = clean if colour else Image.fromarray(studio_y(clean))
    degraded = source
    for step in lossy:
        degraded = step(degraded)
    return studio_y(clean), studio_y(degraded)


@dataclass
class PairSet:
    clean: list[np.ndarray]
    degraded: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.clean)


def build_pairs(paths: list[Path], degradation, variants: int = 1, colour: bool = False) -> PairSet:
    clean, degraded = [], []
    for path in paths:
        with Image.open(path) as img:
            img.load()
            for _ in range(variants):
                c, d = make_pair(img, degradation, colour)
                clean.append(c)
                degraded.append(d)
    return PairSet(clean, degraded)


AUGMENTATIONS = {"dihedral": (0, 1, 2, 3), "flips": (0, 2)}  # quarter turns allowed


class WindowSampler:
    """What every sub-image sampler shares: the images large enough for an input window of
    ``patch + 2 * radius``, and a seeded RNG whose state is checkpointed (exact resumes)."""

    def __init__(self, sizes: list[tuple[int, int]], patch: int, radius: int, seed: int) -> None:
        self.patch, self.radius = patch, radius
        self.window = patch + 2 * radius
        usable = [i for i, size in enumerate(sizes) if min(size) >= self.window]
        if not usable:
            raise ValueError(f"no image is at least {self.window}px on its short side")
        self.usable = np.array(usable)
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class PatchSampler(WindowSampler):
    """Random sub-images (input window, target centre) drawn from a :class:`PairSet`."""

    def __init__(self, pairs: PairSet, patch: int, radius: int, seed: int,
                 augment: str = "dihedral") -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {sorted(AUGMENTATIONS)}, not {augment!r}")
        super().__init__([c.shape for c in pairs.clean], patch, radius, seed)
        self.pairs = pairs
        self.rotations = AUGMENTATIONS[augment]

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng, n, r = self.rng, self.window, self.radius
        inputs = np.empty((batch, n, n), dtype=np.uint8)
        targets = np.empty((batch, self.patch, self.patch), dtype=np.uint8)
        for b in range(batch):
            i = rng.choice(self.usable)
            clean, degraded = self.pairs.clean[i], self.pairs.degraded[i]
            y = rng.integers(0, clean.shape[0] - n + 1)
            x = rng.integers(0, clean.shape[1] - n + 1)
            win_in = degraded[y:y + n, x:x + n]
            win_out = clean[y + r:y + n - r, x + r:x + n - r]
            k, flip = self.rotations[rng.integers(0, len(self.rotations))], rng.integers(0, 2)
            win_in, win_out = np.rot90(win_in, k), np.rot90(win_out, k)
            if flip:
                win_in, win_out = win_in[:, ::-1], win_out[:, ::-1]
            inputs[b], targets[b] = win_in, win_out
        to_tensor = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]  # noqa: E731
        return to_tensor(inputs), to_tensor(targets)
