"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from arcnn.metrics import blocking_effect_factor, psnr, psnr_b, ssim


def test_psnr_hand_case():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    b[0, 0] = 16  # MSE = 256 / 16 = 16
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16))
    assert psnr(a, a) == math.inf


def test_ssim_identical_is_one_and_drops_with_noise():
    rng = np.random.default_rng(0)
    a = np.tile(np.linspace(60, 180, 32), (32, 1))
    for window in ("gaussian", "uniform8"):
        assert ssim(a, a, window) == pytest.approx(1.0)
        assert ssim(a, np.clip(a + rng.normal(0, 30, a.shape), 0, 255), window) < 0.9


def test_ssim_uniform8_hand_case():
    """8x8 images, one window: constant 100 vs constant 110 -> luminance term only."""
    a, b = np.full((8, 8), 100.0), np.full((8, 8), 110.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(a, b, "uniform8") == pytest.approx(expected)


def test_bef_hand_case():
    """16x16 image with a step of 8 across the one vertical block boundary at column 8."""
    img = np.zeros((16, 16))
    img[:, 8:] = 8.0
    # Horizontal pairs crossing a boundary: 16 rows x 1 boundary, each diff^2 = 64.
    # Vertical boundary pairs: 16 columns x 1 boundary, diff 0. So D_B = 16*64 / 32 = 32.
    # Non-boundary pairs all 0: D_Bc = 0. eta = log2(8) / log2(16) = 0.75.
    assert blocking_effect_factor(img) == pytest.approx(0.75 * 32)
    ref = np.zeros((16, 16))
    mse = 32.0
    assert psnr_b(ref, img) == pytest.approx(10 * math.log10(255**2 / (mse + 24)))


def test_bef_zero_when_boundaries_smoother():
    img = np.tile(np.arange(16.0), (16, 1))  # equal differences everywhere
    assert blocking_effect_factor(img) == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
