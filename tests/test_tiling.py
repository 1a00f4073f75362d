"""Tiled inference equals whole-image inference for every architecture, size and tile."""

import numpy as np
import pytest
import torch

from arcnn.architectures import ARCHITECTURES
from arcnn.colour import to_uint8
from arcnn.tiling import padded_window, plan_tiles, restore_plane, restore_whole, Tile

LUMA = [n for n, a in ARCHITECTURES.items() if a.config["type"] != "chroma"]  # chroma: test_chroma.py


def _model(name):
    torch.manual_seed(1)
    model = ARCHITECTURES[name].build().eval()
    return model


@pytest.mark.parametrize("name", LUMA)
@pytest.mark.parametrize("size", [(37, 53), (64, 40), (91, 67)])
def test_tiles_equal_whole_image(name, size):
    model = _model(name)
    plane = np.random.default_rng(sum(size)).integers(0, 256, size).astype(np.uint8)
    whole = restore_whole(model, plane)
    assert whole.shape == size
    for tile in (8, 18, 33, 200):  # smaller than the halo, odd, and larger than the image
        tiled = restore_plane(model, plane, tile=tile, batch_size=3)
        scale = max(1.0, np.abs(whole).max() / 255.0)  # float error is relative to the output's size
        assert np.abs(tiled - whole).max() / 255.0 <= 1e-5 * scale, (name, size, tile)
        assert np.array_equal(to_uint8(tiled), to_uint8(whole))


def test_plan_covers_image_once():
    tiles = plan_tiles(70, 45, 16)
    covered = np.zeros((70, 45), int)
    for t in tiles:
        covered[t.y0:t.y1, t.x0:t.x1] += 1
    assert (covered == 1).all()


def test_plan_aligns_to_stride():
    assert all(t.y0 % 2 == 0 and t.x0 % 2 == 0 for t in plan_tiles(51, 37, 15, stride=2))


def test_window_replicates_border():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    win = padded_window(img, Tile(0, 1, 0, 1), radius=2)
    assert win.shape == (5, 5)
    assert (win[:3, :3] == 0).all() and win[2, 4] == 2 and win[4, 2] == 8


def test_memory_is_bounded_by_tile():
    """Feature maps are allocated per tile: peak tensor size tracks the tile, not the image."""
    model = _model("arcnn")
    seen = []
    hook = model.layers[0].register_forward_hook(lambda m, i, o: seen.append(o.numel()))
    restore_plane(model, np.zeros((300, 300), np.uint8), tile=64, batch_size=1)
    hook.remove()
    assert max(seen) <= 64 * (64 + 2 * 9 - 8) ** 2


@pytest.mark.parametrize("name", LUMA)
def test_restoring_in_place_equals_restoring_into_a_new_plane(name):
    """Band by band over its own input: the same result as restore_plane, to the bit."""
    from arcnn.tiling import restore_in_place

    model = _model(name)
    plane = np.random.default_rng(5).integers(0, 256, (203, 157)).astype(np.float32)
    expected = restore_plane(model, plane, tile=64, batch_size=2, workers=2)
    restore_in_place(model, [plane], [plane], tile=64, batch_size=2, workers=2)
    assert np.array_equal(plane, expected)


def test_restoring_a_uint8_plane_over_itself_rounds_as_to_uint8():
    from arcnn.tiling import restore_in_place

    model = _model("arcnn")
    plane = np.random.default_rng(6).integers(0, 256, (150, 131)).astype(np.uint8)
    expected = to_uint8(restore_plane(model, plane, tile=64, workers=2))
    restore_in_place(model, [plane], [plane], tile=64, workers=2, convert=to_uint8)
    assert np.array_equal(plane, expected)


def test_tile_and_batch_size_zero_mean_the_devices_auto_values():
    from arcnn.restoration import Restorer
    from arcnn.tiling import auto_batch_size, auto_tile

    assert (auto_tile("cpu"), auto_batch_size("cpu")) == (384, 1)
    assert (auto_tile("cuda"), auto_batch_size("cuda")) == (512, 4)
    assert auto_tile("cpu", _model("fast-arcnn")) == 512  # half resolution: a quarter of the feature maps
    restorer = Restorer("passthrough", "cpu")
    assert (restorer.tile, restorer.batch_size) == (0, 1)  # the tile is chosen per network
    model = _model("arcnn")
    plane = np.random.default_rng(7).integers(0, 256, (90, 70)).astype(np.uint8)
    assert np.array_equal(restore_plane(model, plane), restore_plane(model, plane, tile=384, batch_size=1))
