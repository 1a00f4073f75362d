"""Whole-image restoration: modes, colour, alpha, EXIF/ICC, bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from arcnn.errors import BadImageError
from arcnn.images import decode_image, encode_image
from arcnn.restoration import Restorer

RNG = np.random.default_rng(0)
RGB = Image.fromarray(RNG.integers(0, 256, (30, 41, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def restorer():
    return Restorer.load("random:9-7-1-5", device="cpu", tile=16)


def _png(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode,expected", [("L", "L"), ("LA", "LA"), ("RGB", "RGB"), ("RGBA", "RGBA"),
                                           ("P", "RGB"), ("I;16", "I;16"), ("1", "L")])
def test_modes(restorer, mode, expected):
    img = decode_image(_png(RGB.convert(mode)), 10**6)
    out = restorer.restore(img)
    assert out.mode == expected and out.size == img.size


def test_cmyk_jpeg_becomes_rgb(restorer):
    buf = io.BytesIO()
    RGB.convert("CMYK").save(buf, "JPEG", quality=50)
    assert restorer.restore(decode_image(buf.getvalue(), 10**6)).mode == "RGB"


def test_alpha_passes_through_untouched(restorer):
    rgba = RGB.copy()
    alpha = RNG.integers(0, 256, (30, 41), dtype=np.uint8)
    rgba.putalpha(Image.fromarray(alpha))
    out = restorer.restore(decode_image(_png(rgba), 10**6))
    assert np.array_equal(np.asarray(out)[..., 3], alpha)


def test_chroma_passthrough_keeps_cb_cr(restorer):
    """With a model that changes Y only, Cb/Cr of the output are those of the input."""
    from arcnn.colour import rgb_to_ycbcr

    smooth = Image.fromarray(np.full((24, 24, 3), (200, 60, 90), np.uint8))
    out = restorer.restore(smooth)
    a, b = rgb_to_ycbcr(np.asarray(smooth, float)), rgb_to_ycbcr(np.asarray(out, float))
    assert np.abs(a[..., 1:] - b[..., 1:]).max() < 1.5


def test_restores_y_not_identity():
    """A trained-like model (residual, non-zero) really changes the luminance."""
    r = Restorer.load("random:9-1-5", device="cpu")
    net = r.model("random:9-1-5")
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    out = np.asarray(r.restore(RGB.convert("L")), int)
    assert np.abs(out - np.asarray(RGB.convert("L"), int)).max() > 0


def test_exif_orientation_applied_and_metadata_kept(restorer):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif[0x010F] = "arcnn-test-camera"
    icc = b"fake-icc-profile-bytes"
    buf = io.BytesIO()
    RGB.save(buf, "JPEG", quality=30, exif=exif.tobytes(), icc_profile=icc)
    img = decode_image(buf.getvalue(), 10**6)
    assert img.size == (30, 41)  # upright: width and height swapped
    assert img.info["jpeg_quality"] == 30
    out = restorer.restore(img)
    for fmt in ("png", "jpeg", "webp"):
        back = Image.open(io.BytesIO(encode_image(out, fmt, source=img)))
        assert back.size == (30, 41)
        assert back.info.get("icc_profile") == icc
        assert back.getexif().get(0x010F) == "arcnn-test-camera"
        assert back.getexif().get(0x0112, 1) in (1, None)  # orientation already applied


def test_png_level_changes_size_not_pixels():
    smooth = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3).astype(np.uint8)
    img = Image.fromarray(smooth)
    sizes = {}
    for level in (0, 1, 9):
        data = encode_image(img, "png", png_level=level)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), smooth)
        sizes[level] = len(data)
    assert sizes[0] > sizes[1] > sizes[9]
    with pytest.raises(ValueError, match="0-9"):
        encode_image(img, "png", png_level=10)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
])
def test_bad_input_is_a_clear_error(data, reason):
    with pytest.raises(BadImageError, match=reason):
        decode_image(data, 10**6)


def test_truncated_is_a_clear_error():
    buf = io.BytesIO()
    RGB.save(buf, "JPEG", quality=80)
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2], 10**6)


def test_pixel_limit_checked_before_decoding():
    big = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(BadImageError, match="over the limit") as refused:
        decode_image(big, 1_000_000)  # over twice the limit: Pillow's own check fires first
    assert "1000000" in str(refused.value) and "2000000" not in str(refused.value)  # only ours
    assert decode_image(big, 10_000_000).size == (3000, 3000)


def _jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_auto_follows_the_measured_policy_and_passes_the_rest_through(monkeypatch):
    """auto: a JPEG gets the luminance model the shipped policy names for its quality; a PNG (no
    quality to read) and anything above ARCNN_AUTO_MAX_QUALITY are left as they are, pixel for
    pixel, chroma included."""
    from arcnn.policy import shipped_policy

    policy = shipped_policy()
    auto = Restorer.load("auto", device="cpu", tile=64)
    photo = Image.fromarray(np.kron(RNG.integers(0, 256, (8, 10, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    low, high = decode_image(_jpeg(photo, 30), 10**6), decode_image(_jpeg(photo, 90), 10**6)
    png = decode_image(_png(photo), 10**6)
    assert auto.choose_model(low) == policy.luma_model(30) == "jpeg-q30"
    assert auto.choose_model(high) == policy.luma_model(90, subsampled=True)
    assert not np.array_equal(np.asarray(auto.restore(low)), np.asarray(low))
    assert auto.choose(png).label == "passthrough"
    assert np.array_equal(np.asarray(auto.restore(png)), np.asarray(png))
    # the operator's settings reach the library as arguments, not through the environment
    monkeypatch.setenv("ARCNN_AUTO_MAX_QUALITY", "75")
    assert auto.choose(high).label != "passthrough"
    cut = Restorer.load("auto", device="cpu", tile=64, auto_max_quality=75, default_model="jpeg-q40")
    assert cut.choose(high).label == "passthrough"  # the operator's cut: luma and chroma
    assert np.array_equal(np.asarray(cut.restore(high)), np.asarray(high))
    assert cut.choose_model(png) == "jpeg-q40"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_sixteen_bit_input_is_not_written_white(restorer, fmt):
    """A 16-bit PNG written as JPEG or WebP keeps its picture (it came out all white)."""
    ramp = (np.linspace(0, 65535, 40 * 32).reshape(32, 40)).astype(np.uint16)
    img = decode_image(_png(Image.fromarray(ramp)), 10**6)
    for model in ("passthrough", None):
        out = decode_image(encode_image(restorer.restore(img, model), fmt), 10**6)
        grey = np.asarray(out.convert("L"), dtype=float) if out.mode != "I;16" else np.asarray(out) / 257.0
        assert np.abs(grey - ramp / 257.0).mean() < 6, (fmt, model)


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_transparent_colour_becomes_alpha_and_is_kept(restorer, mode, fmt):
    """tRNS transparency (a transparent colour on L, RGB or palette PNGs) is kept as alpha in
    passthrough and restore, in every output format that holds alpha."""
    base = RGB.convert(mode)
    key = base.getpixel((0, 0))
    buf = io.BytesIO()
    base.save(buf, "PNG", transparency=key)
    img = decode_image(buf.getvalue(), 10**6)
    assert img.mode in ("LA", "RGBA")
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA"))[..., 3]
    assert (expected == 0).any() and (expected == 255).any()
    for model in ("passthrough", None):
        out = decode_image(encode_image(restorer.restore(img, model), fmt), 10**6)
        assert np.array_equal(np.asarray(out.convert("RGBA"))[..., 3], expected), (mode, fmt, model)


def test_colour_restore_holds_few_image_sized_arrays():
    """A colour restore (chroma network and luma model) keeps its NumPy memory to a few bytes per
    pixel: float32 planes restored in place, not float64 (H, W, 3) images and their temporaries
    (48 bytes a pixel for the forward conversion alone). tracemalloc counts NumPy's allocations
    (torch's are bounded by the tile and not counted); a small tile keeps the windows negligible."""
    import tracemalloc

    from arcnn.restoration import Choice

    restorer = Restorer.load("random:9-7-1-5", device="cpu", tile=64, batch_size=1, chroma="restore")
    restorer.model("random:chroma")
    img = Image.fromarray(RNG.integers(0, 256, (384, 320, 3), dtype=np.uint8))
    choice = Choice("random:9-7-1-5", (20, True), "random:chroma")
    restorer.restore(img.crop((0, 0, 64, 64)), choice)  # warm up: models, thread pools
    tracemalloc.start()
    out = restorer.restore(img, choice)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.size == img.size
    assert peak / (img.width * img.height) < 30
