"""Image-quality metrics of the artifact-reduction literature, on single-channel images in [0, 255].

* PSNR;
* SSIM (Wang et al. 2004) in two window flavours: the common 11x11 Gaussian (sigma 1.5) and
  unweighted 8x8 windows (the variant the AR-CNN paper's tables use);
* PSNR-B (Yim & Bovik 2011): PSNR with the MSE increased by a blocking effect factor (BEF)
  measured on the test image across the 8x8 block boundaries, so it punishes blocking that plain
  PSNR cannot see.

All take ``reference, test`` as arrays (uint8 or float) of equal shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PEAK = 255.0


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two 2-D images of one shape, got {a.shape} and {b.shape}")
    return a, b


def mse(reference: np.ndarray, test: np.ndarray) -> float:
    a, b = _pair(reference, test)
    return float(np.mean((a - b) ** 2))


def _psnr_from_mse(error: float) -> float:
    return math.inf if error == 0 else 10.0 * math.log10(PEAK**2 / error)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    return _psnr_from_mse(mse(reference, test))


def blocking_effect_factor(image: np.ndarray, block: int = 8) -> float:
    """BEF of Yim & Bovik: how much more neighbouring pixels differ across block boundaries.

    D_B is the mean squared difference of horizontally and vertically adjacent pairs that
    straddle a block boundary, D_Bc that of all other adjacent pairs; the excess is weighted by
    eta = log2(B) / log2(min(H, W)) and counted only when positive.
    """
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape
    dh = (x[:, :-1] - x[:, 1:]) ** 2  # pair (j, j+1) straddles a boundary when (j+1) % B == 0
    dv = (x[:-1, :] - x[1:, :]) ** 2
    h_boundary = (np.arange(1, w) % block) == 0
    v_boundary = (np.arange(1, h) % block) == 0
    d_b_sum = dh[:, h_boundary].sum() + dv[v_boundary, :].sum()
    n_b = h * h_boundary.sum() + w * v_boundary.sum()
    d_bc_sum = dh[:, ~h_boundary].sum() + dv[~v_boundary, :].sum()
    n_bc = h * (~h_boundary).sum() + w * (~v_boundary).sum()
    if n_b == 0 or n_bc == 0:
        return 0.0
    d_b, d_bc = d_b_sum / n_b, d_bc_sum / n_bc
    if d_b <= d_bc:
        return 0.0
    eta = math.log2(block) / math.log2(min(h, w))
    return float(eta * (d_b - d_bc))


def psnr_b(reference: np.ndarray, test: np.ndarray, block: int = 8) -> float:
    """PSNR-B in dB: PSNR with MSE + BEF(test)."""
    return _psnr_from_mse(mse(reference, test) + blocking_effect_factor(test, block))


def _window(kind: str) -> torch.Tensor:
    """The 1-D profile of a separable SSIM window (the 2-D window is its outer product)."""
    if kind == "gaussian":
        coords = torch.arange(11, dtype=torch.float64) - 5
        g = torch.exp(-(coords**2) / (2 * 1.5**2))
        return g / g.sum()
    if kind == "uniform8":
        return torch.full((8,), 1 / 8, dtype=torch.float64)
    raise ValueError(f"unknown SSIM window {kind!r}: use 'gaussian' or 'uniform8'")


def ssim(reference: np.ndarray, test: np.ndarray, window: str = "gaussian") -> float:
    """Mean SSIM over all window positions fully inside the image (no padding), K1=.01, K2=.03."""
    a, b = _pair(reference, test)
    profile = _window(window)
    x = torch.from_numpy(a)[None, None]
    y = torch.from_numpy(b)[None, None]
    if min(a.shape) < profile.numel():
        raise ValueError(f"image {a.shape} smaller than the SSIM window")

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable: rows, then columns
        return F.conv2d(F.conv2d(t, profile[None, None, :, None]), profile[None, None, None, :])

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def all_metrics(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """The figures the paper reports: PSNR, SSIM (8x8 unweighted), PSNR-B, plus Gaussian SSIM."""
    return {
        "psnr": psnr(reference, test),
        "ssim": ssim(reference, test, "uniform8"),
        "ssim_gaussian": ssim(reference, test, "gaussian"),
        "psnr_b": psnr_b(reference, test),
    }
