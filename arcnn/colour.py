"""Colour transforms as small pure functions on float arrays.

Two different "Y"s matter here:

* the JPEG/JFIF YCbCr transform (full range, 0-255 for all three channels) is what a JPEG
  decoder produced, so restoring in that space undoes the codec's own rounding most directly;
  the product uses it for colour images;
* BT.601 *studio range* luma (16-235), as MATLAB's ``rgb2ycbcr``, is what the AR-CNN paper and
  the rest of the literature measure PSNR on; training and ``arcnn eval --protocol paper`` use it.
"""

from __future__ import annotations

import numpy as np

_JFIF_FORWARD = np.array([
    [0.299, 0.587, 0.114],
    [-0.168735892, -0.331264108, 0.5],
    [0.5, -0.418687589, -0.081312411],
])
_JFIF_INVERSE = np.linalg.inv(_JFIF_FORWARD)
_STUDIO_Y = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JFIF RGB -> YCbCr, both float in [0, 255], shape (..., 3)."""
    ycc = rgb.astype(np.float64) @ _JFIF_FORWARD.T
    ycc[..., 1:] += 128.0
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """JFIF YCbCr -> RGB, float in [0, 255] (not clipped), shape (..., 3)."""
    shifted = ycc.astype(np.float64)  # always a copy: the caller's array is left as it was
    shifted[..., 1:] -= 128.0
    return shifted @ _JFIF_INVERSE.T


def rgb_to_studio_y(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8/float in [0, 255] -> BT.601 studio-range Y in [16, 235], as MATLAB rgb2ycbcr."""
    return rgb.astype(np.float64) @ _STUDIO_Y + 16.0


def full_to_studio_luma(y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """JFIF full-range Y (0-255) -> studio range (16-235), the range the luma models learned on.
    ``out`` (which may be ``y`` itself) receives the result instead of a new array."""
    out = np.multiply(y, 219.0 / 255.0, out=out)
    return np.add(out, 16.0, out=out)


def studio_to_full_luma(y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`full_to_studio_luma` (``out`` as there)."""
    out = np.subtract(y, 16.0, out=out)
    return np.multiply(out, 255.0 / 219.0, out=out)


def to_uint8(x: np.ndarray, scratch: bool = False) -> np.ndarray:
    """Round half up and clip to uint8, as MATLAB's im2uint8 does for non-negative values.

    One temporary of ``x``'s size, worked on in place: the chained form
    (``clip(floor(x + 0.5))``) holds three float copies at once, which dominates peak memory on
    large images. With ``scratch`` there is none: ``x`` itself (a float array the caller no
    longer needs) is rounded in place.
    """
    out = np.add(x, 0.5, out=x if scratch else None)
    np.floor(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


BAND_PIXELS = 1 << 14
"""Pixels converted at once by the banded conversions: their float64 temporaries stay a few MB
whatever the image size."""


def _band_rows(width: int, band: int | None) -> int:
    return band or max(1, BAND_PIXELS // max(width, 1))


def ycbcr_to_rgb_uint8(ycc: np.ndarray, band: int | None = None) -> np.ndarray:
    """``to_uint8(ycbcr_to_rgb(ycc))`` for an (H, W, 3) image, ``band`` rows at a time (default:
    :data:`BAND_PIXELS` worth).

    Every pixel is converted on its own, so the result is identical; but only a band's float
    temporaries exist at once instead of three float64 copies of the whole image.
    """
    out = np.empty(ycc.shape, dtype=np.uint8)
    band = _band_rows(ycc.shape[1], band)
    for top in range(0, ycc.shape[0], band):
        out[top:top + band] = to_uint8(ycbcr_to_rgb(ycc[top:top + band]))
    return out


def rgb_to_ycbcr_planes(rgb: np.ndarray, band: int | None = None) -> np.ndarray:
    """(H, W, 3) RGB -> (3, H, W) float32 JFIF YCbCr planes, ``band`` rows at a time.

    The product's colour path: float32 planes hold a photo in 12 bytes per pixel where the
    float64 (H, W, 3) image and its temporaries held 48, and each plane is contiguous, which is
    what the tiler copies windows from.
    """
    h, w = rgb.shape[:2]
    out = np.empty((3, h, w), dtype=np.float32)
    band = _band_rows(w, band)
    for top in range(0, h, band):
        out[:, top:top + band] = np.moveaxis(rgb_to_ycbcr(rgb[top:top + band]), -1, 0)
    return out


def ycbcr_planes_to_rgb_uint8(planes: np.ndarray, alpha: np.ndarray | None = None,
                              band: int | None = None) -> np.ndarray:
    """(3, H, W) YCbCr planes -> (H, W, 3) uint8 RGB, or (H, W, 4) with ``alpha`` (H x W uint8)
    as the fourth channel, converted ``band`` rows at a time (rounded as :func:`to_uint8`)."""
    _, h, w = planes.shape
    out = np.empty((h, w, 3 if alpha is None else 4), dtype=np.uint8)
    band = _band_rows(w, band)
    for top in range(0, h, band):
        out[top:top + band, :, :3] = to_uint8(ycbcr_to_rgb(np.moveaxis(planes[:, top:top + band], 0, -1)))
    if alpha is not None:
        out[..., 3] = alpha
    return out
