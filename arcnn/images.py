"""Decoding and encoding images safely, at the edge between bytes and pixels.

Everything that can be wrong with an input (empty, truncated, not an image, a decompression
bomb) becomes a :class:`~arcnn.errors.BadImageError` with a readable reason, so callers can fail
one file and carry on. Decoding applies the EXIF orientation (the pixels a viewer shows are the
ones we restore) and keeps EXIF and ICC data so that :func:`encode_image` can write them back.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from arcnn import naming
from arcnn.colour import rgb_to_studio_y, to_uint8
from arcnn.errors import AnimatedImageError, BadImageError, TooLargeError
from arcnn.quality import estimate_quality
from arcnn.webp import quantiser

EXTENSIONS = naming.FORMAT_EXTENSIONS
"""Output format -> file extension."""

IMAGE_SUFFIXES = set(naming.IMAGE_SUFFIXES)
"""File suffixes taken as images when a folder is given (CLI, data sets, training data)."""


def list_images(folders: list[Path]) -> list[Path]:
    """Image files under the folders (recursively), sorted per folder; none at all is an error."""
    paths = [p for f in folders for p in sorted(Path(f).rglob("*"))
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    return paths


GREY_Y_MODES = ("L", "I;16", "I", "1")
"""Modes whose single plane is taken as Y itself (:func:`studio_y`)."""


def studio_y(img: Image.Image) -> np.ndarray:
    """uint8 BT.601 studio-range Y of any image; grayscale images (Classic5) are Y already."""
    if img.mode in GREY_Y_MODES:
        return np.asarray(img.convert("L"))
    return to_uint8(rgb_to_studio_y(np.asarray(img.convert("RGB"))))


def codec_roundtrip(img: Image.Image, fmt: str, **params: object) -> Image.Image:
    """Encode with Pillow's real encoder in memory and decode again (what a codec does to pixels)."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    buffer.seek(0)
    out = Image.open(buffer)
    out.load()
    return out

_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_CHROMA_SCALES = {0: (1, 1), 1: (1, 2), 2: (2, 2)}
"""Pillow's ``get_sampling`` (4:4:4, 4:2:2, 4:2:0) -> luma rows, columns per chroma sample."""
_ORIENTATION = 0x0112
_ROTATED = (5, 6, 7, 8)
"""EXIF orientations that swap rows and columns (transposed and rotated by 90 degrees)."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> loaded, upright PIL image; ``info['jpeg_quality']`` holds the estimated quality,
    ``info['jpeg_luma_table']`` and ``info['jpeg_chroma_table']`` the tables (natural order), ``info['jpeg_subsampled']``
    whether a colour JPEG's chroma was subsampled (4:2:0, 4:2:2), ``info['jpeg_chroma_scale']`` by how much
    (rows, columns of luma per chroma sample in the upright image: (2, 2) for 4:2:0, (1, 1) for
    4:4:4; None when not a JPEG or another layout) and ``info['webp_quantiser']``
    a lossy WebP's mean quantiser index (:mod:`arcnn.webp`).

    The pixel limit is checked from the header, before any pixel is decoded, and Pillow's own
    bomb protection is set to the same limit as a second line of defence.
    """
    if not data:
        raise BadImageError("empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise TooLargeError(f"image is {width}x{height} = {width * height} pixels, over the "
                                    f"limit of {max_pixels} (ARCNN_MAX_PIXELS)")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise AnimatedImageError(f"{img.format} with {frames} frames: only still images are "
                                         "restored (the other frames would be lost)")
            tables = getattr(img, "quantization", None) if img.format == "JPEG" else None
            quality = estimate_quality(tables)
            luma_table = list(tables[0]) if tables and len(tables.get(0, ())) == 64 else None
            chroma_table = list(tables[1]) if tables and len(tables.get(1, ())) == 64 else None
            sampling = JpegImagePlugin.get_sampling(img) if img.format == "JPEG" else None
            subsampled = sampling > 0 if sampling is not None else None
            chroma_scale = _CHROMA_SCALES.get(sampling)
            if chroma_scale is not None and img.getexif().get(_ORIENTATION, 1) in _ROTATED:
                chroma_scale = chroma_scale[::-1]
            source_format = img.format
            img.load()
            img = ImageOps.exif_transpose(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLargeError(f"image is over the limit of {max_pixels} pixels (ARCNN_MAX_PIXELS); "
                            "decompression bomb refused") from exc
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (format not recognised)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"corrupt or truncated image: {exc}") from exc
    img = explicit_alpha(img)
    img.info["jpeg_quality"] = quality
    img.info["jpeg_luma_table"] = luma_table
    img.info["jpeg_chroma_table"] = chroma_table
    img.info["jpeg_subsampled"] = subsampled
    img.info["jpeg_chroma_scale"] = chroma_scale
    img.info["webp_quantiser"] = quantiser(data) if source_format == "WEBP" else None
    img.info["source_format"] = source_format
    return img


def explicit_alpha(img: Image.Image) -> Image.Image:
    """An image whose transparency is a PNG/GIF transparent colour (tRNS on L, RGB or P) as the
    same image with an alpha channel (LA or RGBA), so restoration, passthrough and every output
    format that has alpha keep it: a key colour survives neither a restore (its pixels change)
    nor a conversion to WebP."""
    if "transparency" not in img.info or img.mode not in ("L", "RGB", "P"):
        return img
    info = {k: v for k, v in img.info.items() if k != "transparency"}
    out = img.convert("LA" if img.mode == "L" else "RGBA")
    out.info = info
    return out


def read_image(path: Path, max_pixels: int) -> Image.Image:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImageError(f"cannot read {path}: {exc.strerror}") from exc
    return decode_image(data, max_pixels)


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", *_SIXTEEN_BIT)


def format_losses(img: Image.Image, fmt: str) -> list[str]:
    """What writing ``img`` as ``fmt`` gives up, in words for the job report (empty: nothing).

    The output is still written: JPEG was asked for, and JPEG cannot hold alpha; but a caller
    must be able to see that the transparency is gone rather than find out downstream.
    """
    losses = []
    if fmt == "jpeg" and (img.mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in img.info):
        losses.append("alpha dropped: JPEG has no transparency (--format png or webp keeps it)")
    if fmt != "png" and img.mode in _SIXTEEN_BIT:
        losses.append(f"16-bit samples reduced to 8 bits: {fmt.upper()} has no 16-bit mode "
                      "(--format png keeps them)")
    return losses


def _encodable(img: Image.Image, fmt: str) -> Image.Image:
    """Convert to a mode the format can store (JPEG has no alpha; only PNG has 16 bits).

    16-bit images are scaled to 8 bits (Pillow's own conversion clips 0-65535 at 255, which
    turned every 16-bit photo white).
    """
    if fmt != "png" and img.mode in _SIXTEEN_BIT:
        values = np.asarray(img, dtype=np.float64)
        scale = 257.0 if img.mode.startswith("I;16") or values.max() > 255 else 1.0
        img = Image.fromarray(to_uint8(values / scale))
    if fmt == "jpeg" and img.mode not in ("L", "RGB"):
        return img.convert("L" if img.mode in ("LA", "I;16", "I") else "RGB")
    if fmt == "webp" and img.mode not in ("RGB", "RGBA"):
        return img.convert("RGBA" if "A" in img.mode else "RGB")
    if fmt == "png" and img.mode not in _PNG_MODES:  # CMYK, YCbCr, LAB: PNG has no such mode
        return img.convert("RGBA" if "A" in img.mode else "RGB")
    return img


def encode_image(img: Image.Image, fmt: str = "png", source: Image.Image | None = None,
                 png_level: int = 1, quality: int = 95, lossless: bool = False) -> bytes:
    """Encode losslessly (PNG) or at ``quality`` (JPEG 4:4:4, WebP; 95 by default), keeping EXIF
    and ICC. ``lossless`` makes WebP lossless (a passthrough written as WebP loses nothing).

    ``png_level`` is the zlib level of PNG output (``ARCNN_PNG_COMPRESS_LEVEL``): 1 by default,
    because the encoder shares the CPU with inference and level 6 costs ~3x the time
    for ~5% smaller files (a 768x512 Kodak24 photo: 0.19 s against 0.06 s).
    """
    if fmt not in _PIL_FORMAT:
        raise ValueError(f"unknown output format {fmt!r}: use one of {', '.join(_PIL_FORMAT)}")
    info = (source or img).info
    params: dict[str, object] = {}
    if info.get("icc_profile"):
        params["icc_profile"] = info["icc_profile"]
    if info.get("exif"):
        params["exif"] = info["exif"]
    if fmt == "jpeg":
        params.update(quality=quality, subsampling=0)
    elif fmt == "webp":
        # lossless: "quality" is the effort; the fastest (method 0) encodes a Kodak photo in 0.03 s
        # against 0.9 s at full effort, for a 6% larger file
        params.update(lossless=True, quality=25, method=0) if lossless else params.update(quality=quality)
    elif not 0 <= png_level <= 9:
        raise ValueError(f"PNG compress level must be 0-9, not {png_level}")
    else:
        params.update(compress_level=png_level)
    buffer = io.BytesIO()
    _encodable(img, fmt).save(buffer, format=_PIL_FORMAT[fmt], **params)
    return buffer.getvalue()
