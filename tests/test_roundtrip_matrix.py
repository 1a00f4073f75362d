"""Every input mode x every output format x (passthrough, a model), through the worker pipeline.

The output must open, be upright at the right size, keep alpha where the format can hold it,
keep the ICC profile, and match the source: a passthrough in its input's format is the input's
own bytes, one to PNG or WebP is lossless, and lossy formats and models come close. What a format cannot hold (alpha in JPEG, 16 bits in JPEG/WebP) is
written anyway and named in the result's warning, which the job report records.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from arcnn.images import decode_image
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.locations import parse_location
from arcnn.jobs.pipeline import Pipeline, Work
from arcnn.settings import Settings
from arcnn.jobs.storage import LocalStorage

W, H = 48, 40
FORMATS = ("png", "jpeg", "webp")
MODELS = ("passthrough", "jpeg-q90")
"""A bundled trained model: on a clean image its output stays close to the input."""


def _rgb() -> np.ndarray:
    """A smooth colour image with an edge: what photos look like to the models, unlike noise."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 / W, y * 255 / H, 128 + 60 * np.sin(x / 5.0)], axis=-1)
    rgb[10:20, 10:30] = (220, 40, 40)
    return rgb.astype(np.uint8)


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _inputs() -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes), one per input mode the product promises to handle."""
    rgb = Image.fromarray(_rgb())
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1)))
    grey = rgb.convert("L")
    palette = rgb.quantize(16)
    keyed_rgb = rgb.copy()
    keyed_rgb.paste((0, 0, 0), (0, 0, 8, 8))
    keyed_palette = palette.copy()
    keyed_palette.paste(3, (0, 0, 8, 8))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = grey.copy()
    la.putalpha(alpha)
    sixteen = Image.fromarray((np.asarray(grey, dtype=np.uint16) * 257 + 7).astype(np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {
        "1": ("one.png", _save(grey.convert("1"), "PNG")),
        "L": ("grey.png", _save(grey, "PNG")),
        "LA": ("grey-alpha.png", _save(la, "PNG")),
        "P": ("palette.png", _save(palette, "PNG")),
        "P+tRNS": ("palette-key.png", _save(keyed_palette, "PNG", transparency=3)),
        "RGB": ("rgb.png", _save(rgb, "PNG")),
        "RGB+tRNS": ("rgb-key.png", _save(keyed_rgb, "PNG", transparency=(0, 0, 0))),
        "RGBA": ("rgba.png", _save(rgba, "PNG")),
        "CMYK": ("cmyk.tif", _save(rgb.convert("CMYK"), "TIFF")),
        "I;16": ("sixteen.png", _save(sixteen, "PNG")),
        "progressive JPEG": ("progressive.jpg", _save(rgb, "JPEG", quality=90, progressive=True)),
        "EXIF-rotated JPEG": ("rotated.jpg", _save(rgb, "JPEG", quality=90, exif=exif.tobytes())),
        "ICC-tagged": ("icc.png", _save(rgb, "PNG", icc_profile=srgb)),
    }


INPUTS = _inputs()
HAS_ALPHA = {"LA", "P+tRNS", "RGB+tRNS", "RGBA"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], tuple[object, Path]]:
    """Run the whole matrix through one pipeline (as a worker would), once."""
    root = tmp_path_factory.mktemp("matrix")
    src = root / "src"
    src.mkdir()
    for file_name, data in INPUTS.values():
        (src / file_name).write_bytes(data)
    pipeline = Pipeline.from_settings(Settings(device="cpu", tile=64), torch_threads=1, io_threads=2)
    source = LocalStorage(parse_location(str(src)))
    works, where = [], {}
    for fmt in FORMATS:
        for model in MODELS:
            dest_root = root / f"{fmt}-{model}"
            dest = LocalStorage(parse_location(str(dest_root)))
            spec = JobSpec(str(src), str(dest_root), model=model, fmt=fmt)
            for mode, (file_name, _) in INPUTS.items():
                obj = next(o for o in source.list() if o.key == file_name)
                works.append(Work(source, dest, obj.key, obj.etag, spec, tag=(mode, fmt, model)))
                where[(mode, fmt, model)] = dest_root / (Path(file_name).stem + {"jpeg": ".jpg"}.get(fmt, f".{fmt}"))
    try:
        out = {result.work.tag: (result, where[result.work.tag]) for result in pipeline.run(works)}
    finally:
        pipeline.close()
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _rgba8(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I"):
        return np.asarray(Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().astype(np.uint8))
                          .convert("RGBA"))
    return np.asarray(img.convert("RGBA"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", list(INPUTS))
def test_round_trip(results, mode: str, fmt: str, model: str) -> None:
    result, path = results[(mode, fmt, model)]
    assert result.outcome == ("passed_through" if model == "passthrough" else "restored"), (result.reason, result.error)
    source = decode_image(INPUTS[mode][1], 10**8)  # upright, transparency as alpha
    if model == "passthrough" and source.info["source_format"] == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]:
        assert path.read_bytes() == INPUTS[mode][1]  # nothing helps, same format: the input itself
        return
    raw = Image.open(path)
    raw.load()
    assert raw.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    assert raw.size == source.size == ((H, W) if mode == "EXIF-rotated JPEG" else (W, H))
    assert raw.getexif().get(0x0112, 1) == 1  # upright pixels, so no orientation left to apply
    if mode == "ICC-tagged":
        assert raw.info.get("icc_profile") == source.info["icc_profile"]

    expected, got = _rgba8(source), _rgba8(raw)
    keeps_alpha = fmt != "jpeg"
    if mode in HAS_ALPHA and keeps_alpha:
        assert "A" in raw.mode or raw.mode == "P" and "transparency" in raw.info, raw.mode
        assert np.abs(got[..., 3].astype(int) - expected[..., 3]).max() <= (0 if fmt == "png" else 2)
    else:
        assert got[..., 3].min() == 255  # no alpha where none was, none where the format has none
    warning = result.warning
    if mode in HAS_ALPHA and fmt == "jpeg":
        assert "alpha dropped" in warning
    if mode == "I;16" and fmt != "png":
        assert "16-bit" in warning
    if mode not in HAS_ALPHA and not (mode == "I;16" and fmt != "png") and not (model == "passthrough" and fmt == "jpeg"):
        assert warning == ""

    visible = expected[..., 3] > 0 if (mode in HAS_ALPHA and fmt == "webp") else np.ones((raw.height, raw.width), bool)
    psnr = _psnr(got[..., :3][visible], expected[..., :3][visible])
    if model == "passthrough" and fmt == "png":
        if mode == "I;16":
            assert np.array_equal(np.asarray(raw), np.asarray(source))  # all 16 bits kept
        assert psnr == float("inf"), psnr
    elif model == "passthrough" and fmt == "jpeg":
        assert psnr > 35, psnr  # JPEG q95 4:4:4
        assert "re-encoded as JPEG" in warning
    elif model == "passthrough":  # lossless WebP: only 16 bits become 8
        assert psnr == float("inf") or mode == "I;16" and psnr > 45, psnr
    else:
        assert psnr > 28, psnr
