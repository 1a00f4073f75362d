"""What an input says about how it was compressed, from every source there is.

Three sources, each trusted for what it can know:

* the file's JPEG tables (:mod:`arcnn.quality`): the *last* save's steps, exactly;
* a lossy WebP's VP8 header (:mod:`arcnn.webp`): its quantiser, exactly;
* the pixels (:mod:`arcnn.history`): the *dominant* JPEG compression, wherever its grid lies,
  also for files without tables (PNG, BMP, TIFF, lossless WebP) and for re-saves.

The effective quality is the strongest compression found: a q30 photo re-saved at q90 is
restored as q30, a q50 one re-saved at q95 as q50. An image that was never compressed shows no
grid and passes through. :class:`Reading` records what was read for the per-file line, the job
report and the output metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from arcnn.history import History, equivalent_quality, read_history, strength
from arcnn.quality import ijg_tables, nowhere_coarser

WEBP_NEUTRAL_TOLERANCE = 1
"""How far apart R, G and B of a decoded lossy WebP may be where its stored chroma is neutral:
libwebp's integer YUV-to-RGB conversion puts them up to 1 level apart (a JPEG decoder writes
R == G == B exactly)."""

RESAVE_MARGIN = 5
"""A grid in the pixels overrides the file's IJG tables only when it reads at least this many
quality points lower: the pixels of a single save read within 1-2 points of its own tables."""

_EIGHT_BIT = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa")


@dataclass(frozen=True)
class Reading:
    """The effective history of one input.

    ``codec``: ``jpeg`` (the policy of ``quality``, an IJG-equivalent JPEG quality: for steps
    that are not an IJG-scaled table's, ``ijg`` False, the strongest IJG quality nowhere coarser
    than them), ``webp`` (``quality`` is the WebP quality of equal quantiser) or ``none``
    (nothing to undo found).
    ``subsampled``: the chroma subsampling the chroma network is conditioned on. ``grey``: a
    colour file whose decoded chroma is neutral everywhere. ``source``: where ``quality`` came
    from (``tables``, ``pixels``, ``webp``, ``assumed``). ``text``: the same, for people.
    """

    codec: str
    quality: int | None = None
    ijg: bool = True
    subsampled: bool = True
    grey: bool = False
    source: str = ""
    text: str = ""
    table: tuple[int, ...] | None = None
    """A non-IJG file's luminance steps (natural order), which mask the luma model's change
    (:mod:`arcnn.frequency_mask`); None for IJG tables and pixel readings."""
    grid: tuple[int, int] = (0, 0)
    """The 8x8 grid of ``table`` in the decoded (upright) image."""
    low_quality: int | None = None
    """A non-IJG file's :func:`low_table_quality`: the luma model where ``quality`` names none."""
    chroma_quality: int | None = None
    """A non-IJG file's chroma equivalent (:func:`chroma_table_quality`): the chroma network's
    decision and condition where ``quality``'s policy does not run it."""
    chroma_table: tuple[int, ...] | None = None
    """A non-IJG file's chroma steps (natural order)."""
    chroma_scale: tuple[int, int] | None = None
    """The file's luma rows and columns per chroma sample ((2, 2) for 4:2:0), where known."""


def is_grey(img: Image.Image, tolerance: int = 0) -> bool:
    """A colour image (RGB, RGBA, P) whose every pixel has R, G and B at most ``tolerance`` apart
    (0: equal; a lossy WebP decoder writes neutral chroma up to 1 apart): a grey photo in a colour
    file. Its chroma is neutral and must stay exactly so. A sample of rows is looked at first, so
    that a colour photo (nearly every input) costs a fraction of a full pass."""
    if img.mode not in ("RGB", "RGBA", "RGBX", "P", "PA"):
        return False
    rgb = np.asarray(img if img.mode in ("RGB", "RGBA", "RGBX") else img.convert("RGB"))
    return _neutral(rgb[:: max(1, rgb.shape[0] // 64)], tolerance) and _neutral(rgb, tolerance)


def neutral_pixels(rgb: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Where a decoded H x W x 3(+) image has no colour (R, G and B at most ``tolerance`` apart):
    a JPEG decoder writes R == G == B exactly wherever the stored chroma is neutral, a WebP
    decoder within :data:`WEBP_NEUTRAL_TOLERANCE`."""
    if tolerance == 0:
        return (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    channels = rgb[..., :3]
    return (channels.max(axis=-1).astype(np.int16) - channels.min(axis=-1)) <= tolerance


def _neutral(rgb: np.ndarray, tolerance: int) -> bool:
    return bool(np.all(neutral_pixels(rgb, tolerance)))


def pixel_history(img: Image.Image) -> History | None:
    """:func:`~arcnn.history.read_history` of an 8-bit image's luma, None for 16-bit images
    (no JPEG holds them)."""
    if img.mode not in _EIGHT_BIT:
        return None
    return read_history(np.asarray(img.convert("L")))


LOW_FREQUENCIES = tuple(f for f in range(64) if f // 8 + f % 8 <= 6)
"""The 28 frequencies (u + v <= 6) that hold nearly all of a photo's non-zero coefficients."""


def table_quality(table: list[int]) -> int:
    """The IJG-equivalent quality of a luminance table no IJG quality produces: the strongest
    IJG table nowhere coarser than it, on all 64 frequencies.

    All 64, the highest too: textured photos keep non-zero coefficients there, and a model
    trained on coarser high-frequency steps smooths them away. Respecting only u + v <= 6, a flat
    table of 10s read as q91 and the q90 model (high steps up to 22) lost up to 0.62 dB on
    BSDS500 val images; respecting all 64, no table shape measured made an image worse
    (docs/model-choice.md). Where this quality is too mild for any model, :func:`low_table_quality`
    gives the fallback."""
    return equivalent_quality({f: (int(step), 1) for f, step in enumerate(table)}, misread_share=0.0).quality


def low_table_quality(table: list[int]) -> int:
    """The same on the low frequencies only (:data:`LOW_FREQUENCIES`): the model that fits the
    steps where a photo's distortion is. Above them the file's steps may be much finer than that
    model's, so its change is masked out there (:mod:`arcnn.frequency_mask`)."""
    return equivalent_quality({f: (int(table[f]), 1) for f in LOW_FREQUENCIES}, misread_share=0.0).quality


def chroma_table_quality(table: list[int]) -> int:
    """The strongest IJG quality whose chroma table is nowhere coarser than ``table`` (natural
    order), on all 64 frequencies: the chroma network's condition for a non-IJG file. A flat
    table of 10s reads q95 (IJG's chroma steps are 99 over most frequencies)."""
    fits = nowhere_coarser(ijg_tables()[1], table)
    return int(np.argmax(fits)) + 1 if fits.any() else 100


def _on_same_steps(table: list[int], history: History) -> int:
    """The quality of the file's table read on the frequencies the pixels showed, so that the two
    are compared on the same steps (the pixels see only the lowest frequencies)."""
    return equivalent_quality({f: (int(table[f]), history.counts.get(f, 1)) for f in history.steps}).quality


def read_input(img: Image.Image, assumed_quality: int = 0) -> Reading:
    """Read ``img``'s history from ``img.info`` (set by :func:`arcnn.images.decode_image`) and its
    pixels. ``assumed_quality`` (1-100, ``--input-quality``) replaces what was read: lower values
    restore more strongly."""
    info = img.info
    subsampled = info.get("jpeg_subsampled") is not False  # unknown (no JPEG): 4:2:0, the common case
    webp = info.get("webp_quantiser")
    grey = is_grey(img, WEBP_NEUTRAL_TOLERANCE if webp is not None else 0)
    tail = "; grey in a colour file: chroma kept neutral" if grey else ""
    if assumed_quality:
        return Reading("jpeg", assumed_quality, True, subsampled, grey, "assumed",
                       f"assumed q{assumed_quality} (--input-quality){tail}")
    if webp is not None:
        from arcnn.webp import equivalent_quality as webp_quality

        quality = webp_quality(webp)
        return Reading("webp", quality, False, True, grey, "webp", f"WebP quantiser {webp:.0f} (~q{quality}){tail}")
    history = pixel_history(img)
    pixels = history.describe() if history is not None else "not read (16-bit)"
    file_quality, table = info.get("jpeg_quality"), info.get("jpeg_luma_table")
    found = history is not None and history.jpeg
    chroma = (", 4:2:0" if subsampled else ", 4:4:4") if img.mode not in ("L", "LA", "1", "I;16", "I") else ""
    if table is not None:
        tables = f"file tables q{file_quality}" if file_quality is not None else "non-IJG file tables"
        quality = file_quality if file_quality is not None else table_quality(table)
        if found and history.quality <= _on_same_steps(table, history) - RESAVE_MARGIN:
            # an earlier, stronger save: IJG's models whenever the pixels or the file say IJG
            return Reading("jpeg", history.quality, history.ijg or file_quality is not None, subsampled, grey,
                           "pixels", f"pixels: {pixels}; {tables}{chroma}{tail}")
        if file_quality is not None:
            return Reading("jpeg", quality, True, subsampled, grey, "tables", f"estimated q{quality}{chroma}{tail}")
        chroma_table = info.get("jpeg_chroma_table")
        chroma_quality = chroma_table_quality(chroma_table) if chroma_table is not None else None
        chroma_text = f", chroma ~q{chroma_quality}" if chroma_quality is not None and chroma else ""
        low_quality = low_table_quality(table)
        return Reading("jpeg", quality, False, subsampled, grey, "tables",
                       f"non-IJG file tables, strength {strength(table):.1f} "
                       f"(~q{quality}, low frequencies ~q{low_quality}{chroma_text}){chroma}{tail}",
                       tuple(int(t) for t in table), history.offset if found else (0, 0), low_quality, chroma_quality,
                       tuple(int(t) for t in chroma_table) if chroma_table is not None else None,
                       info.get("jpeg_chroma_scale"))
    if found:
        return Reading("jpeg", history.quality, history.ijg, True, grey, "pixels",
                       f"pixels: {pixels}; no JPEG tables{tail}")
    return Reading("none", None, True, True, grey, "", f"no JPEG tables; pixels: {pixels}{tail}")
