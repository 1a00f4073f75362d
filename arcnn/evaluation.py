"""Evaluation protocols: how a model's PSNR / SSIM / PSNR-B figures are produced.

``paper``: ground-truth RGB -> BT.601 studio-range Y rounded to uint8 -> grayscale JPEG at
quality Q (Pillow) -> restore -> metrics on Y. This is the AR-CNN paper's Table 1 protocol: with
it, plain JPEG on LIVE1 reproduces the paper's published input figures (docs/results.md), which
is what makes our restored figures comparable with the paper's.

``color``: RGB JPEG (4:2:0) at Q -> restore through the colour pipeline -> PSNR on RGB and on Y.

``bucket``: what a real bucket holds. Each ground-truth image goes through every row of
:data:`BUCKET_ROWS` (colour JPEG at q5-q95, 4:2:0 and 4:4:4, saved twice with and without a
grid-shifting crop), is decoded and restored as ``arcnn restore`` would, and RGB PSNR is
measured per row: mean in and out, mean gain and the worst image's gain.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from arcnn.colour import rgb_to_studio_y, to_uint8, ycbcr_to_rgb_uint8
from arcnn.images import codec_roundtrip, decode_image, list_images, studio_y
from arcnn.metrics import all_metrics, psnr
from arcnn.tiling import restore_plane, restore_whole

def mean_metrics(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def evaluate_planes(model: nn.Module | None, clean: list[np.ndarray], degraded: list[np.ndarray],
                    device: str = "cpu", tile: int = 0,
                    progress: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """Average metrics of the degraded input and of the restored output against ``clean``, and
    each restored image's PSNR (``per_image``, in order: a model is judged by its worst too).
    ``progress`` is called with each image's index once it is measured."""
    before, after = [], []
    for i, (c, d) in enumerate(zip(clean, degraded)):
        before.append(all_metrics(c, d))
        if model is not None:
            restored = to_uint8(restore_plane(model, d, tile=tile, device=device))
            after.append(all_metrics(c, restored))
        if progress is not None:
            progress(i)
    result = {"input": mean_metrics(before)}
    if after:
        result["restored"] = mean_metrics(after)
        result["per_image"] = [m["psnr"] for m in after]
    return result


def rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all three channels of two H x W x 3 uint8 images."""
    return psnr(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def evaluate_chroma(model: nn.Module, clean: list[np.ndarray], inputs: list[np.ndarray],
                    device: str = "cpu") -> dict[str, dict[str, float]]:
    """RGB PSNR of decoded JPEGs and of the same with the chroma network's Cb/Cr.

    ``clean`` are 3 x H x W YCbCr stacks, ``inputs`` the network's 5 x H x W stacks (decoded
    YCbCr and the condition planes). Luma is left as decoded, so the gain is the chroma's alone.
    """
    before, after = [], []
    for c, x in zip(clean, inputs):
        truth = ycbcr_to_rgb_uint8(np.moveaxis(c, 0, -1))
        decoded = np.array(x[:3], dtype=np.float64)
        before.append({"psnr": rgb_psnr(truth, ycbcr_to_rgb_uint8(np.moveaxis(decoded, 0, -1)))})
        decoded[1:] = restore_whole(model, x, device)
        after.append({"psnr": rgb_psnr(truth, ycbcr_to_rgb_uint8(np.moveaxis(decoded, 0, -1)))})
    return {"input": mean_metrics(before), "restored": mean_metrics(after)}


def paper_protocol(model: nn.Module | None, folder: Path, quality: int, device: str = "cpu",
                   tile: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    clean, degraded = [], []
    for path in list_images([folder]):
        with Image.open(path) as img:
            y = studio_y(img)
        clean.append(y)
        degraded.append(np.asarray(codec_roundtrip(Image.fromarray(y), "JPEG", quality=quality)))
    return {"protocol": "paper", "images": len(clean), "quality": quality,
            **evaluate_planes(model, clean, degraded, device, tile, progress)}


def jpeg_bytes(img: Image.Image, quality: int, subsampling: int = 2) -> bytes:
    """``img`` saved as a colour JPEG by Pillow (libjpeg) at ``quality`` (subsampling 2: 4:2:0)."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def decode_as_product(data: bytes) -> Image.Image:
    """Decode the way ``arcnn restore`` and the workers do, so ``auto`` sees the JPEG's tables."""
    return decode_image(data, max_pixels=1 << 40)


def color_protocol(restore: Callable[[Image.Image], Image.Image] | None, folder: Path,
                   quality: int, progress: Callable[[int], None] | None = None) -> dict:
    """RGB JPEG 4:2:0 in; ``restore`` is the product's colour pipeline (None: input only).
    ``per_image`` is each restored image's RGB PSNR, in order; ``progress`` is called with each
    image's index once it is measured."""
    before, after = [], []
    for i, path in enumerate(list_images([folder])):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        jpeg = decode_as_product(jpeg_bytes(rgb, quality))
        candidates = [("input", jpeg, before)]
        if restore is not None:
            candidates.append(("restored", restore(jpeg), after))
        ref = np.asarray(rgb)
        for _, out, rows in candidates:
            arr = np.asarray(out.convert("RGB"))
            rows.append({
                "psnr_rgb": rgb_psnr(ref, arr),
                "psnr_y": psnr(to_uint8(rgb_to_studio_y(ref)), to_uint8(rgb_to_studio_y(arr))),
            })
        if progress is not None:
            progress(i)
    result = {"protocol": "color", "images": len(before), "quality": quality, "input": mean_metrics(before)}
    if after:
        result["restored"] = mean_metrics(after)
        result["per_image"] = [m["psnr_rgb"] for m in after]
    return result


def ground_truths(folder: Path, images: int | None = None) -> tuple[list[Path], list[Image.Image]]:
    """The first ``images`` (all: None) image paths of ``folder`` and their RGB pixels."""
    paths = list_images([folder])[:images]
    truths = []
    for path in paths:
        with Image.open(path) as img:
            truths.append(img.convert("RGB"))
    return paths, truths


@dataclass(frozen=True)
class BucketRow:
    """One way an image reached the bucket: JPEG saves in order, each (quality, subsampling),
    with ``shift`` pixels cropped from the top and left before the last one (which moves the
    earlier saves' 8x8 grid off the last one's)."""

    name: str
    saves: tuple[tuple[int, int], ...]
    shift: int = 0

    def degrade(self, rgb: Image.Image) -> tuple[bytes, Image.Image]:
        """(the JPEG file, the ground truth it is compared with: cropped like it)."""
        img, reference, data = rgb, rgb, b""
        for i, (quality, subsampling) in enumerate(self.saves):
            if i == len(self.saves) - 1 and self.shift:
                box = (self.shift, self.shift, img.width, img.height)
                img, reference = img.crop(box), reference.crop(box)
            data = jpeg_bytes(img, quality, subsampling)
            if i < len(self.saves) - 1:  # the next save starts from the decoded pixels
                img = Image.open(io.BytesIO(data)).convert("RGB")
        return data, reference


BUCKET_ROWS: tuple[BucketRow, ...] = (
    *(BucketRow(f"q{q}", ((q, 2),)) for q in (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)),
    BucketRow("q20 4:4:4", ((20, 0),)),
    BucketRow("q95 4:4:4", ((95, 0),)),
    BucketRow("q90 > q60", ((90, 2), (60, 2))),
    BucketRow("q75 > q50", ((75, 2), (50, 2))),
    BucketRow("q90 > crop 3 > q60", ((90, 2), (60, 2)), shift=3),
    BucketRow("q75 > crop 3 > q50", ((75, 2), (50, 2)), shift=3),
)
"""The realistic-bucket grid: libjpeg's default 4:2:0 at every tenth quality (and q5, q95),
4:4:4 at a low and a high quality, and re-saved photos, aligned and cropped between saves."""


def bucket_protocol(restore: Callable[[Image.Image], Image.Image] | None, folder: Path,
                    rows: Iterable[BucketRow] = BUCKET_ROWS, images: int | None = None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Per row: mean RGB PSNR of the JPEGs and of their restorations, mean and worst gain."""
    paths, truths = ground_truths(folder, images)
    table = []
    for row in rows:
        before, after = [], []
        for truth in truths:
            data, reference = row.degrade(truth)
            jpeg = decode_as_product(data)
            ref = np.asarray(reference)
            before.append(rgb_psnr(ref, np.asarray(jpeg.convert("RGB"))))
            if restore is not None:
                after.append(rgb_psnr(ref, np.asarray(restore(jpeg).convert("RGB"))))
        entry = {"row": row.name, "input": float(np.mean(before))}
        if after:
            gains = np.array(after) - np.array(before)
            worst = int(np.argmin(gains))
            entry.update(restored=float(np.mean(after)), gain=float(gains.mean()),
                         worst_gain=float(gains[worst]), worst_image=paths[worst].name)
        table.append(entry)
        if progress is not None:
            progress(row.name)
    result = {"protocol": "bucket", "images": len(paths), "rows": table,
              "mean_input": float(np.mean([r["input"] for r in table]))}
    if restore is not None:
        result.update(mean_restored=float(np.mean([r["restored"] for r in table])),
                      mean_gain=float(np.mean([r["gain"] for r in table])),
                      worst_gain=float(min(r["worst_gain"] for r in table)))
    return result


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


FLAT_TABLE = [10] * 64
"""A flat quantisation table (every step 10), as some encoders and cameras write: no IJG quality
produces it."""
RAMP_TABLE = [6 + 2 * (i // 8 + i % 8) for i in range(64)]
"""A table that grows linearly with frequency (6 to 34), unlike IJG's Annex K shape."""


@dataclass(frozen=True)
class HistoryRow:
    """One history an image can have reached the bucket with: ``make`` turns the ground truth
    into (the file's bytes, the ground truth cropped like it). ``truth`` is what the best bundled
    model is told: JPEG qualities to assume (``q30``) or WebP models to apply (``webp-q40``, or
    ``webp-q40+colour`` with the chroma network);
    the row's oracle is the best of them. ``grey``: the ground truth is made grey first."""

    name: str
    make: Callable[[Image.Image], tuple[bytes, Image.Image]]
    truth: tuple[str, ...]
    grey: bool = False


def _png_of_jpeg(quality: int) -> Callable[[Image.Image], tuple[bytes, Image.Image]]:
    return lambda rgb: (encoded(codec_roundtrip(rgb, "JPEG", quality=quality, subsampling=2), "PNG"), rgb)


def _resave(first: int, second: int, shift: int = 0) -> Callable[[Image.Image], tuple[bytes, Image.Image]]:
    def make(rgb: Image.Image) -> tuple[bytes, Image.Image]:
        once = codec_roundtrip(rgb, "JPEG", quality=first, subsampling=2)
        box = (shift, shift, rgb.width, rgb.height)
        return jpeg_bytes(once.crop(box), second), rgb.crop(box)
    return make


def _tables(table: list[int]) -> Callable[[Image.Image], tuple[bytes, Image.Image]]:
    return lambda rgb: (encoded(rgb, "JPEG", qtables=[table, table], subsampling=2), rgb)


def _webp(quality: int) -> Callable[[Image.Image], tuple[bytes, Image.Image]]:
    return lambda rgb: (encoded(rgb, "WEBP", quality=quality), rgb)


def _lossless_webp_of_jpeg(quality: int) -> Callable[[Image.Image], tuple[bytes, Image.Image]]:
    return lambda rgb: (encoded(codec_roundtrip(rgb, "JPEG", quality=quality, subsampling=2), "WEBP",
                                lossless=True), rgb)


_JPEG_TRUTHS = tuple(f"q{q}" for q in range(10, 100, 10))
_WEBP_TRUTHS = tuple(f"webp-q{q}{chroma}" for q in (20, 40, 60, 70, 80) for chroma in ("", "+colour"))
"""Every bundled WebP model, alone and with the chroma network as ``--chroma restore`` runs it."""

HISTORY_ROWS: tuple[HistoryRow, ...] = (
    HistoryRow("png of q30", _png_of_jpeg(30), ("q30",)),
    HistoryRow("png of q60", _png_of_jpeg(60), ("q60",)),
    HistoryRow("lossless webp of q40", _lossless_webp_of_jpeg(40), ("q40",)),
    HistoryRow("q30 > q90", _resave(30, 90), ("q30",)),
    HistoryRow("q30 > crop 3 > q90", _resave(30, 90, 3), ("q30",)),
    HistoryRow("q50 > q95", _resave(50, 95), ("q50",)),
    HistoryRow("q40 > crop 5 > q85", _resave(40, 85, 5), ("q40",)),
    HistoryRow("flat tables (10)", _tables(FLAT_TABLE), _JPEG_TRUTHS),
    HistoryRow("ramp tables (6-34)", _tables(RAMP_TABLE), _JPEG_TRUTHS),
    HistoryRow("webp q40", _webp(40), _WEBP_TRUTHS),
    HistoryRow("webp q70", _webp(70), _WEBP_TRUTHS),
    HistoryRow("grey q30 in colour JPEG", lambda rgb: (jpeg_bytes(rgb, 30), rgb), ("q30",), grey=True),
    HistoryRow("pristine", lambda rgb: (encoded(rgb, "PNG"), rgb), ()),
)
"""The history grid (docs/results.md): decoded-and-saved PNGs and lossless WebPs of JPEGs,
re-saves at a higher quality (aligned and shifted), tables of other shapes, lossy WebP, a grey
photo in a colour JPEG, and the ground truth itself."""


def invented_chroma(rgb: np.ndarray) -> float:
    """Mean |Cb - 128| + |Cr - 128| (JFIF) of an H x W x 3 image: the colour in a grey photo."""
    from arcnn.colour import rgb_to_ycbcr

    ycc = rgb_to_ycbcr(rgb)
    return float(np.mean(np.abs(ycc[..., 1] - 128) + np.abs(ycc[..., 2] - 128)))


def history_protocol(restore: Callable[[Image.Image], Image.Image],
                     told: Callable[[str], Callable[[Image.Image], Image.Image]], folder: Path,
                     rows: Iterable[HistoryRow] = HISTORY_ROWS, images: int | None = None,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Per row: mean RGB PSNR in and out with the product's defaults, the mean and worst gain,
    the gain of the best of the row's ``truth`` models (``told(truth)`` restores with it), the
    share of that gain reached, images changed (pristine: must be 0) and, for grey rows, the
    chroma the output invented."""
    paths, truths = ground_truths(folder, images)
    table = []
    for row in rows:
        before, after, oracle, invented, changed = [], [], {t: [] for t in row.truth}, [], 0
        for truth in truths:
            source = truth.convert("L").convert("RGB") if row.grey else truth
            data, reference = row.make(source)
            decoded = decode_as_product(data)
            ref, inp = np.asarray(reference), np.asarray(decoded.convert("RGB"))
            out = np.asarray(restore(decoded).convert("RGB"))
            before.append(rgb_psnr(ref, inp))
            after.append(rgb_psnr(ref, out))
            changed += int(not np.array_equal(inp, out))
            if row.grey:
                invented.append(invented_chroma(out))
            for t in row.truth:
                oracle[t].append(rgb_psnr(ref, np.asarray(told(t)(decoded).convert("RGB"))))
        same = np.array(after) == np.array(before)  # identical images: both PSNRs infinite
        with np.errstate(invalid="ignore"):  # inf - inf where both are identical: 0 by `same`
            gains = np.where(same, 0.0, np.array(after) - np.array(before))
        worst = int(np.argmin(gains))
        entry = {"row": row.name, "input": float(np.mean(before)), "restored": float(np.mean(after)),
                 "gain": float(gains.mean()), "worst_gain": float(gains[worst]),
                 "worst_image": paths[worst].name, "changed": changed}
        if oracle:
            best = max(oracle, key=lambda t: np.mean(oracle[t]))
            entry.update(oracle=best, oracle_gain=float(np.mean(oracle[best]) - np.mean(before)))
            entry["share"] = entry["gain"] / entry["oracle_gain"] if entry["oracle_gain"] > 0 else None
        if row.grey:
            entry["invented_chroma"] = float(np.mean(invented))
        table.append(entry)
        if progress is not None:
            progress(row.name)
    scored = [r for r in table if r["row"] != "pristine"]
    return {"protocol": "history", "images": len(paths), "rows": table,
            "mean_gain": float(np.mean([r["gain"] for r in scored])),
            "worst_gain": float(min(r["worst_gain"] for r in table))}
