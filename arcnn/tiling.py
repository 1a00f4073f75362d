"""Seam-free tiled inference.

The networks use valid convolutions, so an output pixel depends only on input pixels within the
model's ``radius``. Replicate-padding the image once and running each tile with a halo of
``radius`` pixels therefore gives *exactly* the whole-image result; no blending is needed.

The halo is cut straight out of the uint8 image with clamped indices (which *is* replicate
padding), so no full-size float copy of the image, let alone of the 64-channel feature maps, is
ever held: memory is bounded by the tile size. Tiles of one shape are batched together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Tile:
    """Output rectangle ``[y0, y1) x [x0, x1)`` of the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def plan_tiles(height: int, width: int, tile: int, stride: int = 1) -> list[Tile]:
    """Cover the image with tiles of side ``tile`` (the last row/column may be smaller).

    ``tile`` is rounded down to a multiple of the model's ``stride`` so that every tile starts on
    the same sub-sampling grid as the whole image (needed for exactness of strided models).
    """
    if tile < stride:
        raise ValueError(f"tile {tile} smaller than the model stride {stride}")
    tile -= tile % stride
    return [
        Tile(y, min(y + tile, height), x, min(x + tile, width))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


def padded_window(image: np.ndarray, tile: Tile, radius: int, stride: int = 1) -> np.ndarray:
    """The tile plus its halo, replicate-padded at the image border (a copy, same dtype).

    For strided models the window is extended on the far side to a size the model can consume
    (any extra output is cropped away by the caller).
    """
    h, w = image.shape[:2]
    extra_y = (-(tile.y1 - tile.y0)) % stride
    extra_x = (-(tile.x1 - tile.x0)) % stride
    rows = np.clip(np.arange(tile.y0 - radius, tile.y1 + radius + extra_y), 0, h - 1)
    cols = np.clip(np.arange(tile.x0 - radius, tile.x1 + radius + extra_x), 0, w - 1)
    return image[rows[:, None], cols[None, :]]


def _batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    by_shape: dict[tuple[int, int], list[Tile]] = defaultdict(list)
    for t in tiles:
        by_shape[t.shape].append(t)
    for group in by_shape.values():
        for i in range(0, len(group), batch_size):
            yield group[i:i + batch_size]


@torch.inference_mode()
def restore_plane(model: nn.Module, plane: np.ndarray, tile: int = 512, batch_size: int = 4,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Run ``model`` over one image plane (H x W, uint8 or float in [0, 255]) in tiles.

    Returns a float32 plane in [0, 255] (unclipped, so callers choose how to round). The model
    sees values scaled to [0, 1], as in training.
    """
    radius, stride = model.radius, getattr(model, "stride", 1)
    h, w = plane.shape
    out = np.empty((h, w), dtype=np.float32)
    for group in _batches(plan_tiles(h, w, tile, stride), batch_size):
        windows = np.stack([padded_window(plane, t, radius, stride) for t in group])
        x = torch.from_numpy(windows.astype(np.float32) / 255.0)[:, None].to(device, dtype)
        y = model(x).float().mul_(255.0).cpu().numpy()[:, 0]
        for t, result in zip(group, y):
            th, tw = t.shape
            out[t.y0:t.y1, t.x0:t.x1] = result[:th, :tw]
    return out


@torch.inference_mode()
def restore_whole(model: nn.Module, plane: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Reference whole-image inference: replicate-pad once by the radius, one forward pass.

    What a user would write; the tests hold :func:`restore_plane` to it exactly.
    """
    radius, stride = model.radius, getattr(model, "stride", 1)
    h, w = plane.shape
    pad = ((radius, radius + (-h) % stride), (radius, radius + (-w) % stride))
    padded = np.pad(plane.astype(np.float32) / 255.0, pad, mode="edge")
    y = model(torch.from_numpy(padded)[None, None].to(device))
    return y.float().mul_(255.0).cpu().numpy()[0, 0, :h, :w]
