"""Reading compression history from pixels, file tables and WebP headers (arcnn/history.py,
arcnn/reading.py, arcnn/webp.py), and the choices and outputs that follow from it."""

import io

import numpy as np
import pytest
from PIL import Image

from arcnn.history import equivalent_quality, read_history
from arcnn.images import decode_image
from arcnn.quality import STD_LUMA, scaled_table
from arcnn.reading import read_input, table_quality
from arcnn.restoration import Restorer
from arcnn.webp import equivalent_quality as webp_quality
from arcnn.webp import quantiser


def photo(seed: int = 0, size: tuple[int, int] = (200, 160)) -> Image.Image:
    """A never-compressed colour picture with photo-like statistics: smooth shapes at several
    scales (bicubic-enlarged noise), edges, and a little sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    layers = [np.asarray(Image.fromarray(rng.integers(0, 256, (h // s, w // s, 3), dtype=np.uint8))
                         .resize((w, h), Image.BICUBIC), dtype=np.float64) for s in (40, 10, 4)]
    img = 0.5 * layers[0] + 0.3 * layers[1] + 0.2 * layers[2] + rng.normal(0, 2, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encoded(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(img: Image.Image, quality: int, **params) -> Image.Image:
    return Image.open(io.BytesIO(encoded(img, quality=quality, **params))).convert("RGB")


def history_of(img: Image.Image):
    return read_history(np.asarray(img))


@pytest.mark.parametrize("quality", [10, 30, 60, 80])
def test_a_decoded_jpeg_shows_its_quality_and_grid(quality):
    found = history_of(jpeg(photo(1), quality))
    assert found.jpeg and found.ijg and found.offset == (0, 0)
    assert abs(found.quality - quality) <= 2


def test_the_grid_is_found_after_a_crop():
    cropped = jpeg(photo(2), 30).crop((3, 5, 200, 160))  # the grid now starts at row 3, column 5
    found = history_of(cropped)
    assert found.jpeg and found.offset == (3, 5) and abs(found.quality - 30) <= 2


@pytest.mark.parametrize("shift", [0, 3])
def test_a_resave_at_higher_quality_reads_as_the_first_save(shift):
    first = jpeg(photo(3), 30).crop((shift, shift, 200, 160))
    found = history_of(jpeg(first, 90))
    assert found.jpeg and abs(found.quality - 30) <= 2
    assert found.offset == ((8 - shift) % 8, (8 - shift) % 8)


@pytest.mark.parametrize("seed", range(4))
def test_never_compressed_pictures_show_no_jpeg(seed):
    assert not history_of(photo(seed)).jpeg
    assert not history_of(photo(seed).convert("L")).jpeg
    # nor a down-scaled JPEG (the grid is gone)
    small = jpeg(photo(seed, (400, 320)), 30).resize((200, 160), Image.BOX)
    assert not history_of(small).jpeg


def test_flat_images_and_tiny_images_are_not_read_as_jpeg():
    assert not history_of(Image.new("RGB", (64, 64), (40, 90, 200))).jpeg
    assert not history_of(photo(0).crop((0, 0, 12, 12))).jpeg


@pytest.mark.parametrize("quality", [10, 25, 50, 75, 90])
def test_ijg_tables_map_to_their_own_quality(quality):
    table = scaled_table(STD_LUMA, quality)
    fit = equivalent_quality({f: (int(table[f]), 1) for f in range(1, 64)})
    assert fit.ijg and fit.quality == quality


@pytest.mark.parametrize("table", [[10] * 64, [24] * 64, [6 + 2 * (f // 8 + f % 8) for f in range(64)]])
def test_other_tables_map_to_an_ijg_quality_nowhere_coarser(table):
    """Nowhere means all 64 frequencies: the highest ones too, where IJG's steps are largest."""
    quality = table_quality(table)
    assert all(scaled_table(STD_LUMA, quality)[f] <= table[f] for f in range(64))
    assert any(scaled_table(STD_LUMA, quality - 1)[f] > table[f] for f in range(64))


def test_lossy_webp_quantiser_is_read_from_the_header():
    img = photo(4)
    values = [quantiser(encoded(img, "WEBP", quality=q)) for q in (10, 40, 70, 95)]
    assert all(a > b for a, b in zip(values, values[1:]))  # coarser at lower quality
    assert 0 <= values[-1] and values[0] <= 127
    assert abs(webp_quality(values[1]) - 40) <= 15
    assert quantiser(encoded(img, "WEBP", lossless=True)) is None
    assert quantiser(encoded(img, quality=50)) is None
    assert quantiser(b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00\x00\x00") is None  # truncated


def decode(data: bytes) -> Image.Image:
    return decode_image(data, 10**7)


def test_reading_prefers_the_strongest_compression_found():
    img = photo(5)
    png_of_jpeg = decode(encoded(jpeg(img, 30), "PNG"))
    reading = read_input(png_of_jpeg)
    assert reading.codec == "jpeg" and reading.source == "pixels" and abs(reading.quality - 30) <= 2
    assert "no JPEG tables" in reading.text and "offset (0,0)" in reading.text
    resaved = decode(encoded(jpeg(img, 30), quality=90))
    reading = read_input(resaved)
    assert reading.source == "pixels" and abs(reading.quality - 30) <= 2 and "file tables q90" in reading.text
    single = read_input(decode(encoded(img, quality=60)))
    assert single.source == "tables" and single.quality == 60 and single.text == "estimated q60, 4:2:0"
    custom = read_input(decode(encoded(img, qtables=[[10] * 64, [10] * 64])))
    assert custom.source == "tables" and "non-IJG file tables" in custom.text
    assert read_input(decode(encoded(img, "PNG"))).codec == "none"
    assumed = read_input(decode(encoded(img, "PNG")), assumed_quality=20)
    assert assumed.codec == "jpeg" and assumed.quality == 20 and assumed.source == "assumed"


@pytest.fixture(scope="module")
def auto():
    return Restorer.load("auto", device="cpu", tile=64, precision="fp32")


def test_auto_restores_a_png_of_a_jpeg_and_leaves_a_pristine_png_untouched(auto):
    img = photo(6)
    choice = auto.choose(decode(encoded(jpeg(img, 30), "PNG")))
    assert choice.luma == "jpeg-q30" and "pixels: JPEG ~q" in choice.why
    pristine = decode(encoded(img, "PNG"))
    assert auto.choose(pristine).label == "passthrough"
    assert np.array_equal(np.asarray(auto.restore(pristine)), np.asarray(img))


def test_input_quality_overrides_what_is_read():
    strong = Restorer("auto", device="cpu", tile=64, input_quality=10)
    choice = strong.choose(decode(encoded(photo(7), quality=90)))
    assert choice.luma == "jpeg-q10" and "assumed q10" in choice.why
    with pytest.raises(ValueError):
        Restorer("auto", device="cpu", input_quality=101)


@pytest.mark.parametrize("tier", ["standard", "fast"])
def test_lossy_webp_follows_its_measured_luma_and_chroma_tables(tier):
    """WEBP_POLICY names the luma model, WEBP_CHROMA the standard chroma network's condition,
    in either tier (the fast tier has no WebP models of its own)."""
    from arcnn.registry import bundled
    from arcnn.restoration import webp_chroma, webp_model

    restorer = Restorer.load("auto", device="cpu", tile=64, precision="fp32", tier=tier)
    for quality in (25, 45, 75):
        decoded = decode(encoded(photo(8), "WEBP", quality=quality))
        choice = restorer.choose(decoded)
        read = choice.reading.quality
        assert "WebP quantiser" in choice.why
        assert choice.luma == webp_model(read, list(bundled()))
        condition = webp_chroma(read)
        assert choice.chroma == (None if condition is None else (condition, True))
        assert choice.chroma is None or choice.chroma_model == "colour"


def test_chroma_restore_on_a_webp_uses_its_table_or_the_mildest_condition():
    from arcnn.restoration import WEBP_CHROMA_RESTORE, webp_chroma

    restorer = Restorer("auto", device="cpu", tile=64, chroma="restore")
    decoded = decode(encoded(photo(8), "WEBP", quality=95))
    assert restorer.choose(decoded).chroma == (webp_chroma(95) or WEBP_CHROMA_RESTORE, True)


@pytest.mark.parametrize("quality", [20, 60])
def test_a_grey_photo_in_a_lossy_webp_comes_out_exactly_grey(auto, quality):
    """libwebp decodes neutral chroma with R, G, B up to 1 apart: still grey, and the output has
    R == G == B exactly wherever anything was restored."""
    decoded = decode(encoded(photo(9).convert("L").convert("RGB"), "WEBP", quality=quality))
    before = np.asarray(decoded).astype(int)
    assert np.abs(before[..., 0] - before[..., 1]).max() == 1  # not exactly neutral as decoded
    choice = auto.choose(decoded)
    assert choice.reading.grey and choice.chroma is None
    out = np.asarray(auto.restore(decoded, choice)).astype(int)
    if choice.luma == "passthrough":
        assert np.array_equal(out, before)
    else:
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_a_grey_photo_in_a_colour_jpeg_stays_exactly_grey(auto):
    grey = photo(9).convert("L").convert("RGB")
    decoded = decode(encoded(grey, quality=30))
    choice = auto.choose(decoded)
    assert choice.chroma is None and choice.luma == "jpeg-q30" and "grey" in choice.why
    out = np.asarray(auto.restore(decoded, choice)).astype(int)
    assert not np.array_equal(out, np.asarray(decoded))  # luma was restored
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_the_chroma_network_adds_no_colour_where_the_decoded_chroma_is_neutral(auto):
    img = np.array(photo(10))
    img[:, :96] = img[:, :96].mean(axis=2, keepdims=True).astype(np.uint8)  # a grey left part
    decoded = decode(encoded(Image.fromarray(img), quality=30, subsampling=0))
    choice = auto.choose(decoded)
    assert choice.chroma is not None  # a colour photo: the chroma network runs
    before, out = np.asarray(decoded).astype(int), np.asarray(auto.restore(decoded, choice)).astype(int)
    neutral = (before[..., 0] == before[..., 1]) & (before[..., 1] == before[..., 2])
    assert neutral.sum() > 1000
    assert np.array_equal(out[neutral][:, 0], out[neutral][:, 1])
    assert np.array_equal(out[neutral][:, 1], out[neutral][:, 2])


def test_webp_models_follow_their_measured_policy():
    from arcnn.restoration import PASSTHROUGH, WEBP_POLICY, webp_model

    names = ["webp-q20", "webp-q40", "webp-q60", "webp-q80", "jpeg-q30"]
    assert webp_model(42, names) == WEBP_POLICY[40] and webp_model(95, names) == PASSTHROUGH
    assert webp_model(12, ["jpeg-q30"]) == PASSTHROUGH  # the model the policy names is not bundled


def test_non_ijg_tables_follow_the_jpeg_policy_at_their_equivalent_quality(auto):
    """A flat table of 32s: the JPEG policy at the strongest IJG quality nowhere coarser."""
    from arcnn.policy import shipped_policy

    decoded = decode(encoded(photo(11), qtables=[[32] * 64, [32] * 64]))
    reading = auto.read(decoded)
    assert not reading.ijg and reading.quality == table_quality([32] * 64)
    assert shipped_policy().luma_model(reading.quality) != "passthrough"
    assert auto.choose(decoded).luma == shipped_policy().luma_model(reading.quality)


def test_neutral_pixels_allow_a_tolerance_for_webp_decoders():
    from arcnn.restoration import neutral_pixels

    rgb = np.array([[[10, 10, 10], [10, 11, 10], [10, 12, 11], [200, 199, 200]]], dtype=np.uint8)
    assert neutral_pixels(rgb).tolist() == [[True, False, False, False]]
    assert neutral_pixels(rgb, 1).tolist() == [[True, True, False, True]]


def test_mild_non_ijg_tables_get_the_low_frequency_model_masked_to_the_file_steps(auto):
    """A flat table of 10s: on all 64 frequencies it reads q96 (no model), on the low ones q91.
    The q90 model runs, and on the file's 8x8 grid its change is kept only at the frequencies
    whose step is at least KEEP_SHARE times the model's: every other coefficient is the input's."""
    from arcnn.frequency_mask import KEEP_SHARE
    from arcnn.history import DCT

    decoded = decode(encoded(photo(12, (160, 120)), qtables=[[10] * 64, [10] * 64]))
    reading = auto.read(decoded)
    assert (reading.quality, reading.low_quality, reading.chroma_quality) == (96, 91, 95)
    choice = auto.choose(decoded)
    assert choice.luma == "jpeg-q90" and choice.chroma == (90, True)  # chroma like q95: too mild
    assert choice.chroma_mask is not None and "chroma network at q90: its upsampling and" in choice.why
    kept = np.asarray([10] * 64).reshape(8, 8) >= KEEP_SHARE * scaled_table(STD_LUMA, 90).reshape(8, 8)
    assert np.array_equal(choice.mask, kept) and 0 < kept.sum() < 64
    out = auto.restore(decoded, choice)

    def luma_dct(img: Image.Image) -> np.ndarray:
        from arcnn.colour import rgb_to_ycbcr_planes

        y = rgb_to_ycbcr_planes(np.asarray(img.convert("RGB")))[0]
        blocks = y[:120, :160].reshape(15, 8, 20, 8).transpose(0, 2, 1, 3)
        return DCT @ blocks @ DCT.T

    before, after = luma_dct(decoded), luma_dct(out)
    change = np.abs(after - before)
    # masked frequencies change only by the 8-bit rounding of the output (and chroma's none)
    assert change[..., ~kept].mean() < 0.35 < change[..., kept].mean() * 3
    assert change[..., kept].max() > 2


def test_chroma_too_mild_for_the_network_is_masked_to_its_upsampling_and_the_hidden_frequencies(auto):
    """Flat 10s, 4:2:0: the chroma network runs at the mildest condition the policy runs it at
    (q90), masked: its change to the chroma samples is kept only at the frequencies whose file
    step is CHROMA_KEEP_SHARE times q90's, its upsampling whole. With no frequency kept, against
    the whole change, the output's chroma averaged over each 2x2 sample moves far less (what
    remains is the 8-bit rounding and the bilinear spread of the rule), the detail within samples
    about as much. A 4:4:4 file has no upsampling: its chroma passes through; an IJG file's is
    the policy's. The fast tier uses the standard network here (its own made images worse)."""
    from dataclasses import replace

    from arcnn.colour import rgb_to_ycbcr_planes
    from arcnn.frequency_mask import chroma_keep
    from arcnn.restoration import UPSAMPLING_MAX_QUALITY

    truth = photo(15, (160, 128))
    decoded = decode(encoded(truth, qtables=[[10] * 64, [10] * 64], subsampling=2))
    choice = auto.choose(decoded)
    assert choice.chroma == (90, True) and decoded.info["jpeg_chroma_scale"] == (2, 2)
    assert np.array_equal(choice.chroma_mask, chroma_keep([10] * 64, 90)) and 0 < choice.chroma_mask.sum() < 8
    before = rgb_to_ycbcr_planes(np.asarray(decoded))[1:]

    def samples(planes: np.ndarray) -> np.ndarray:
        return planes.reshape(2, 64, 2, 80, 2).mean(axis=(2, 4))

    def changes(c) -> tuple[float, float]:
        """Mean absolute change of the chroma's sample means, and of its detail within samples."""
        after = rgb_to_ycbcr_planes(np.asarray(auto.restore(decoded, c)))[1:]
        moved = after - before
        means = samples(moved)
        return np.abs(means).mean(), np.abs(moved - means.repeat(2, axis=1).repeat(2, axis=2)).mean()

    upsampling = replace(choice, chroma_mask=np.zeros((8, 8), dtype=bool))
    (means, detail), (all_means, all_detail) = changes(upsampling), changes(replace(choice, chroma_mask=None))
    assert means < 0.4 * all_means and detail > 0.5 * all_detail
    full = decode(encoded(truth, qtables=[[10] * 64, [10] * 64], subsampling=0))
    assert full.info["jpeg_chroma_scale"] == (1, 1)
    assert auto.choose(full).chroma is None
    assert auto.choose(decode(encoded(truth, quality=90))).chroma_mask is None
    milder = decode(encoded(truth, qtables=[[10] * 64, [4] * 64], subsampling=2))  # chroma like q98
    assert auto.read(milder).chroma_quality > UPSAMPLING_MAX_QUALITY and auto.choose(milder).chroma is None
    fast = Restorer("auto", "cpu", tier="fast").choose(decoded)  # the standard network, as for WebP
    assert fast.chroma == (90, True) and fast.chroma_model == "colour" and fast.chroma_mask is not None


def test_mask_chroma_change_keeps_the_upsampling_and_the_kept_frequencies_of_the_samples():
    from arcnn.frequency_mask import mask_chroma_change

    rng = np.random.default_rng(1)
    nothing, everything = np.zeros((8, 8), bool), np.ones((8, 8), bool)
    before = rng.uniform(0, 255, (2, 21, 30)).astype(np.float32)
    out = before + 7.0  # the same change over every sample: none of it is finer than a sample
    mask_chroma_change(before, out, nothing, (2, 2))
    assert np.allclose(out, before, atol=1e-4)
    checker = np.indices((21, 30)).sum(axis=0) % 2 * 2.0 - 1.0
    for phase in ((0, 0), (1, 1)):  # a change of zero mean within each 2x2 sample stays whole
        ring = checker.copy()
        ring[:phase[0]], ring[:, :phase[1]] = 0, 0
        ring[21 - (21 - phase[0]) % 2:], ring[:, 30 - (30 - phase[1]) % 2:] = 0, 0  # whole samples only
        out = before + ring.astype(np.float32)
        mask_chroma_change(before, out, nothing, (2, 2), phase)
        assert np.allclose(out - before, ring, atol=1e-4)
    out = before + rng.normal(0, 3, before.shape).astype(np.float32)
    mask_chroma_change(before, out, nothing, (1, 1))  # 4:4:4: nothing is finer than a sample
    assert np.allclose(out, before, atol=1e-4)
    blocks = rng.uniform(0, 255, (2, 32, 48)).astype(np.float32)  # whole 16x16 chroma blocks
    after = blocks + rng.normal(0, 3, blocks.shape).astype(np.float32)
    out = after.copy()
    mask_chroma_change(blocks, out, everything, (2, 2))  # every frequency kept: the whole change
    assert np.allclose(out, after, atol=1e-3)


@pytest.mark.parametrize("scale, phase", [((2, 2), (0, 0)), ((2, 2), (3, 5)), ((1, 2), (1, 1))])
def test_mask_chroma_change_gives_the_same_result_in_any_band_size(monkeypatch, scale, phase):
    """The full-resolution work goes in bands of sample rows; the bilinear context each band
    carries makes them join exactly, down to bands of one sample row."""
    import arcnn.frequency_mask as frequency_mask

    rng = np.random.default_rng(2)
    before = rng.uniform(0, 255, (2, 53, 41)).astype(np.float32)
    after = before + rng.normal(0, 5, before.shape).astype(np.float32)
    keep = rng.random((8, 8)) < 0.3
    outs = []
    for band in (1, 3, 256):
        monkeypatch.setattr(frequency_mask, "SAMPLE_BAND", band)
        out = after.copy()
        frequency_mask.mask_chroma_change(before, out, keep, scale, phase)
        outs.append(out)
    assert not np.allclose(outs[-1], after, atol=1e-2)
    assert all(np.allclose(out, outs[-1], atol=1e-4) for out in outs)


def test_decode_records_the_chroma_sampling_upright():
    img = photo(16, (64, 48))
    assert decode(encoded(img, quality=80, subsampling=1)).info["jpeg_chroma_scale"] == (1, 2)  # 4:2:2
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: rows and columns swap
    rotated = decode(encoded(img, quality=80, subsampling=1, exif=exif.tobytes()))
    assert rotated.size == (48, 64) and rotated.info["jpeg_chroma_scale"] == (2, 1)
    assert decode(encoded(img, "PNG")).info["jpeg_chroma_scale"] is None


def test_a_non_ijg_chroma_table_decides_the_chroma_network_by_its_own_quality(auto):
    """Flat 16s: luma q94 (policy: chroma passes through), chroma q92 (policy: run, at q92)."""
    decoded = decode(encoded(photo(13), qtables=[[16] * 64, [16] * 64]))
    reading = auto.read(decoded)
    assert reading.chroma_quality == 92
    choice = auto.choose(decoded)
    assert choice.chroma == (92, True) and choice.luma == "jpeg-q90"
    assert choice.chroma_mask is None  # a condition that fits the file's chroma: all of its change
    ramp = [max(1, round(16 * (0.5 + (f // 8 + f % 8) / 7))) for f in range(64)]  # luma q87 runs chroma
    choice = auto.choose(decode(encoded(photo(13), qtables=[ramp, ramp])))
    assert choice.chroma == (87, True) and choice.chroma_mask is None


def test_a_model_the_all_frequencies_rule_chose_is_not_masked(auto):
    decoded = decode(encoded(photo(11), qtables=[[32] * 64, [32] * 64]))
    assert auto.choose(decoded).mask is None


def test_apply_mask_keeps_only_the_chosen_frequencies_on_the_grid():
    from arcnn.frequency_mask import apply_mask
    from arcnn.history import DCT

    rng = np.random.default_rng(0)
    before = rng.uniform(0, 255, (29, 37)).astype(np.float32)
    after = before + rng.normal(0, 3, before.shape).astype(np.float32)
    everything, nothing = np.ones((8, 8), bool), np.zeros((8, 8), bool)
    out = after.copy()
    apply_mask(before, out, everything, (3, 2))
    assert np.allclose(out[3:27, 2:34], after[3:27, 2:34], atol=1e-3)
    assert np.array_equal(out[:3], before[:3]) and np.array_equal(out[:, 34:], before[:, 34:])  # border
    out = after.copy()
    apply_mask(before, out, nothing, (3, 2))
    assert np.allclose(out, before, atol=1e-3)
    low = np.zeros((8, 8), bool)
    low[:2, :2] = True
    out = after.copy()
    apply_mask(before, out, low, (3, 2))
    change = DCT @ (out - before)[3:11, 2:10] @ DCT.T
    full = DCT @ (after - before)[3:11, 2:10] @ DCT.T
    assert np.allclose(change[low], full[low], atol=1e-3) and np.allclose(change[~low], 0, atol=1e-3)


def test_coarser_parts_give_each_frequency_the_coarsest_model_that_fits():
    """Flat 24s beside jpeg-q90 (whose steps are nowhere above 24): of the next two models on the
    grid, each frequency goes to the coarsest whose step there is still not above 24."""
    from arcnn.frequency_mask import coarser_parts

    models = {q: f"jpeg-q{q}" for q in range(10, 100, 10)}
    parts = coarser_parts([24] * 64, 90, models, depth=2)
    assert [name for name, _ in parts] == ["jpeg-q80", "jpeg-q70"]
    (_, q80), (_, q70) = parts
    assert not (q80 & q70).any()
    assert (scaled_table(STD_LUMA, 70).reshape(8, 8)[q70] <= 24).all()
    assert (scaled_table(STD_LUMA, 80).reshape(8, 8)[q80] <= 24).all()
    assert (scaled_table(STD_LUMA, 70).reshape(8, 8)[q80] > 24).all()  # q70 would be too coarse there
    assert (scaled_table(STD_LUMA, 80).reshape(8, 8)[~(q80 | q70)] > 24).all()  # q90's own
    assert coarser_parts([24] * 64, 90, models, depth=0) == ()
    assert coarser_parts(list(scaled_table(STD_LUMA, 90)), 90, models) == ()  # q90's own table
    assert coarser_parts([24] * 64, 10, models) == ()  # nothing below


def test_a_table_much_coarser_than_its_model_at_some_frequencies_draws_on_coarser_models(auto):
    """Flat 32s read q87 (the policy's model fits every frequency) and are 5-10 times its steps
    at the low ones: there the output's luma is the coarser models', elsewhere the model's."""
    from dataclasses import replace

    from arcnn.colour import rgb_to_ycbcr_planes
    from arcnn.frequency_mask import model_quality
    from arcnn.history import DCT

    decoded = decode(encoded(photo(14, (160, 120)), qtables=[[32] * 64, [32] * 64]))
    choice = auto.choose(decoded)
    assert choice.mask is None and choice.parts
    assert all(model_quality(name) < model_quality(choice.luma) for name, _ in choice.parts)
    assert "by frequency: " + choice.parts[0][0] in choice.why
    taken = np.any([keep for _, keep in choice.parts], axis=0)

    def luma_dct(img: Image.Image) -> np.ndarray:
        y = rgb_to_ycbcr_planes(np.asarray(img.convert("RGB")))[0]
        return DCT @ y[:120, :160].reshape(15, 8, 20, 8).transpose(0, 2, 1, 3) @ DCT.T

    alone = luma_dct(auto.restore(decoded, replace(choice, parts=())))
    differ = np.abs(luma_dct(auto.restore(decoded, choice)) - alone)
    assert differ[..., ~taken].mean() < 0.35 < differ[..., taken].mean()  # rounding alone, outside

    grey = decode(encoded(photo(14, (160, 120)).convert("L"), qtables=[[32] * 64]))
    grey_choice = auto.choose(grey)
    assert grey_choice.parts
    with_parts, without = (np.asarray(auto.restore(grey, c), dtype=np.float64)
                           for c in (grey_choice, replace(grey_choice, parts=())))
    assert with_parts.shape == without.shape and np.abs(with_parts - without).mean() > 0.05


def test_ijg_tables_draw_on_no_other_model(auto):
    assert auto.choose(decode(encoded(photo(15), quality=60))).parts == ()
