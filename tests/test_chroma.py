"""The colour path: the chroma network's exact tiling and fast path, its training data, the
measured auto policy, and what the product does to colour JPEGs with it."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from arcnn.acceleration import prepare
from arcnn.architectures import ChromaNet, build
from arcnn.colour import rgb_to_ycbcr
from arcnn.images import decode_image
from arcnn.model_names import CHROMA_MODEL
from arcnn.policy import AutoPolicy, shipped_policy
from arcnn.restoration import PASSTHROUGH, Choice, Restorer, condition_planes
from arcnn.tiling import restore_planes, restore_whole

RNG = np.random.default_rng(3)


def _net(widths=(8, 8, 8, 8)) -> ChromaNet:
    torch.manual_seed(0)
    net = ChromaNet(widths=widths).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def _stack(h, w, quality=30, subsampled=True):
    planes = RNG.integers(0, 256, (3, h, w)).astype(np.uint8)
    return [*planes, *condition_planes(quality, subsampled, (h, w))]


def test_radius_and_cost_follow_the_kernels():
    net = ChromaNet()
    assert net.radius == 2 * (2 + 2 + 2 + 2 + 1)  # half-resolution radius, in full-resolution pixels
    assert net.macs_per_pixel == (25 * 20 * 64 + 3 * 25 * 64 * 64 + 9 * 64 * 8) // 4
    assert build(net.config()).config() == net.config()


@pytest.mark.parametrize("size", [(37, 53), (64, 40), (91, 67)])
def test_tiles_equal_whole_image(size):
    """Odd sizes, tiles smaller than the halo and larger than the image: all equal the whole."""
    net = _net()
    stack = _stack(*size)
    whole = restore_whole(net, np.stack(stack))
    assert whole.shape == (2, *size)
    for tile in (8, 18, 33, 200):
        tiled = restore_planes(net, [stack], tile=tile, batch_size=3)[0]
        assert np.abs(tiled - whole).max() < 1e-3, tile


def test_fast_path_equals_module():
    net = _net()
    stack = _stack(50, 46)
    reference = restore_whole(net, np.stack(stack))
    fast = restore_planes(prepare(net, "cpu", "fp32"), [stack], tile=24)[0]
    assert np.abs(fast - reference).max() < 1e-3


def test_condition_planes_cost_no_memory_and_change_the_output():
    planes = condition_planes(30, True, (4000, 6000))
    assert planes.shape == (2, 4000, 6000) and planes.strides[1:] == (0, 0)
    assert planes[0, 0, 0] == 30 and planes[1, 0, 0] == 255
    net = _net()
    base = _stack(40, 40)
    other = [*base[:3], *condition_planes(90, False, (40, 40))]
    a, b = (restore_planes(net, [s])[0] for s in (base, other))
    assert np.abs(a - b).max() > 0.01


def test_a_plane_count_that_does_not_fit_the_model_is_refused():
    with pytest.raises(ValueError, match="5 channel"):
        restore_planes(_net(), [np.zeros((3, 20, 20), np.uint8)])


def test_full_chroma_ground_truth_halves_the_image():
    from training.colour_data import full_chroma

    img = Image.fromarray(RNG.integers(0, 256, (21, 30, 3), dtype=np.uint8))
    half = full_chroma(img)
    assert half.size == (15, 11)  # an odd side's last row averages the 2x1 pixels there
    expected = np.asarray(img, float)[:20].reshape(10, 2, 15, 2, 3).mean(axis=(1, 3))
    assert np.abs(np.asarray(half, float)[:10] - expected).max() <= 0.5


def test_jpeg_mix_records_what_a_decoder_can_tell():
    import random

    from arcnn.quality import estimate_quality
    from training.colour_data import JPEGMix

    img = Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mix = JPEGMix(low=10, high=90, p444=0.5, p_double=1.0, p_shift=1.0, rng=random.Random(1))
    for _ in range(6):
        d = mix(img)
        assert d.image.size == (64 - d.crop[1], 64 - d.crop[0]) and min(d.crop) >= 1
        assert estimate_quality(d.image.quantization) == d.quality
        from PIL import JpegImagePlugin

        assert (JpegImagePlugin.get_sampling(d.image) > 0) == d.subsampled


def test_webp_mix_is_conditioned_on_the_quality_the_file_reads_as():
    """What the product knows of a WebP at inference: the quality its VP8 quantiser reads as."""
    import io

    from arcnn.webp import equivalent_quality, quantiser
    from training.colour_data import WebPMix, mix_from_config

    img = Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mix = mix_from_config({"type": "webp_mix", "low": 20, "high": 80, "p_jpeg": 0.0}, seed=3)
    assert isinstance(mix, WebPMix) and mix.describe() == {"type": "webp_mix", "low": 20, "high": 80, "p_jpeg": 0.0}
    for _ in range(4):
        d = mix(img)
        nominal = int(d.description.split("webp q")[1].split()[0])
        buffer = io.BytesIO()
        img.save(buffer, format="WEBP", quality=nominal)
        assert d.quality == equivalent_quality(quantiser(buffer.getvalue())) and d.subsampled
        assert d.image.mode == "RGB" and d.image.size == img.size and d.crop == (0, 0)
    with pytest.raises(ValueError, match="webp_mix"):
        mix_from_config({"type": "jpeg"})


def test_sampler_windows_start_on_even_pixels():
    """Windows keep the 2x2 grid's phase against the JPEG blocks: they start on even pixels
    (plane 0 holds each pixel's column, plane 1 its row, so a window tells where it came from)."""
    from training.colour_data import ColourPairs, ColourPatchSampler

    rows, cols = np.mgrid[0:61, 0:70].astype(np.float32)
    degraded = [np.stack([cols, rows, rows])]
    clean = [RNG.random((3, 61, 70)).astype(np.float32) * 255]
    sampler = ColourPatchSampler(ColourPairs(clean, degraded, [(40, True)]), patch=8, radius=6, seed=0)
    x, y = sampler.sample(64)
    assert x.shape == (64, 5, 20, 20) and y.shape == (64, 2, 8, 8)
    assert torch.allclose(x[:, 3], torch.full_like(x[:, 3], 40 / 255))
    assert torch.allclose(x[:, 4], torch.ones_like(x[:, 4]))
    for window in (x[:, :2] * 255).round().numpy():
        left, top = window[0, 0].min(), window[1][:, 0].min()
        assert left % 2 == 0 and top % 2 == 0
    flipped = (x[:, 0, 0, 1] < x[:, 0, 0, 0]).float().mean()
    assert 0.2 < flipped < 0.8


def test_policy_takes_the_nearest_grid_point():
    policy = AutoPolicy({"4:2:0": {10: "jpeg-q10", 20: "jpeg-q20", 90: "jpeg-q90"},
                         "4:4:4": {10: "jpeg-q10", 20: "jpeg-q20", 90: PASSTHROUGH}},
                        {"4:2:0": {10: True, 90: True}, "4:4:4": {10: True, 90: False}})
    assert policy.luma_model(5) == "jpeg-q10"
    assert policy.luma_model(15) == "jpeg-q10"  # a tie goes to the lower, harder quality
    assert policy.luma_model(16) == "jpeg-q20"
    assert policy.luma_model(99) == "jpeg-q90" and policy.luma_model(99, subsampled=False) == PASSTHROUGH
    assert policy.use_chroma(93, True) and not policy.use_chroma(93, False)
    assert AutoPolicy.from_json(policy.to_json()) == policy


def test_policy_decision_admits_no_image_worse_than_the_limit():
    """The best mean wins only among ways whose worst image loses at most max_loss; passthrough
    (gain 0 everywhere) is always admissible."""
    from training.studies.auto_policy import Cell, cells_from_record, decide

    cell = Cell({("passthrough", False): (0.0, 0.0), ("jpeg-q90", False): (0.4, -0.1),
                 ("jpeg-q90", True): (0.9, -0.04), ("passthrough", True): (0.5, -0.3)})
    assert cell.best(0.05)[:2] == ("jpeg-q90", True)
    assert cell.best(0.01)[:2] == ("passthrough", False)
    policy, record = decide({(90, "4:2:0"): cell, (90, "4:4:4"): Cell({("passthrough", False): (0.0, 0.0),
                                                                       ("jpeg-q90", False): (0.6, -0.2)})}, 0.05)
    assert policy.luma == {"4:2:0": {90: "jpeg-q90"}, "4:4:4": {90: PASSTHROUGH}}
    assert policy.chroma == {"4:2:0": {90: True}, "4:4:4": {90: False}}
    assert decide(cells_from_record(record), 0.05)[0] == policy


def test_shipped_policy_covers_q5_to_q95():
    policy = shipped_policy()
    assert policy is not None
    for s in ("4:2:0", "4:4:4"):
        assert min(policy.luma[s]) <= 5 and max(policy.luma[s]) >= 95
        assert set(policy.chroma[s]) == set(policy.luma[s])


def _colour_jpeg(quality, subsampling=2, size=(96, 80)):
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    photo = np.dstack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 5) % 256]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return decode_image(buf.getvalue(), 10**7)


def test_decoder_reports_subsampling():
    assert _colour_jpeg(50, 2).info["jpeg_subsampled"] is True
    assert _colour_jpeg(50, 0).info["jpeg_subsampled"] is False


def test_auto_restores_chroma_of_a_low_quality_colour_jpeg():
    """At q10 the policy runs the chroma network: Cb/Cr change, and the job label says so."""
    auto = Restorer.load("auto", device="cpu", tile=64)
    img = _colour_jpeg(10)
    choice = auto.choose(img)
    assert choice.chroma == (10, True) and choice.label == f"{choice.luma}+{CHROMA_MODEL}"
    ycc_in = rgb_to_ycbcr(np.asarray(img, float))
    ycc_out = rgb_to_ycbcr(np.asarray(auto.restore(img, choice), float))
    assert np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]).mean() > 0.1
    passthrough = Restorer.load("auto", device="cpu", tile=64, chroma="passthrough")
    ycc_y_only = rgb_to_ycbcr(np.asarray(passthrough.restore(img), float))
    # Y only: Cb/Cr move only where the new Y pushes RGB against 0 or 255 (clipping) or by rounding
    assert np.abs(ycc_y_only[..., 1:] - ycc_in[..., 1:]).mean() < 0.1 * np.abs(ycc_out[..., 1:] - ycc_in[..., 1:]).mean()


def test_explicit_passthrough_leaves_every_pixel_alone():
    img = _colour_jpeg(10)
    restorer = Restorer.load("auto", device="cpu", tile=64, chroma="restore")
    assert restorer.choose(img, PASSTHROUGH) == Choice(PASSTHROUGH)
    assert np.array_equal(np.asarray(restorer.restore(img, PASSTHROUGH)), np.asarray(img))


def test_chroma_keeps_alpha_and_grey_images_never_get_it():
    restorer = Restorer.load("random:9-7-1-5", device="cpu", tile=32, chroma="restore")
    rgba = _colour_jpeg(20).convert("RGBA")
    alpha = RNG.integers(0, 256, rgba.size[::-1], dtype=np.uint8)
    rgba.putalpha(Image.fromarray(alpha))
    out = restorer.restore(rgba)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    grey = _colour_jpeg(20).convert("L")
    assert restorer.choose(grey).chroma is None


def test_bucket_row_crops_the_truth_like_the_jpeg():
    """A cropped re-save is compared with the ground truth cropped the same way."""
    from arcnn.evaluation import BucketRow, decode_as_product

    truth = Image.fromarray(RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8))
    data, reference = BucketRow("x", ((90, 2), (60, 2)), shift=3).degrade(truth)
    img = decode_as_product(data)
    assert img.size == reference.size == (37, 29) and img.info["jpeg_quality"] == 60
    assert np.array_equal(np.asarray(reference), np.asarray(truth)[3:, 3:])


def test_chroma_setting_reaches_the_worker_and_is_validated(monkeypatch):
    from worker.settings import WorkerSettings
    from arcnn.jobs.pipeline import Models

    monkeypatch.setenv("ARCNN_CHROMA", "passthrough")
    settings = WorkerSettings.from_env(os.environ)
    assert Models(settings).restorer.chroma == "passthrough"
    monkeypatch.setenv("ARCNN_CHROMA", "sometimes")
    with pytest.raises(ValueError, match="ARCNN_CHROMA"):
        WorkerSettings.from_env(os.environ)


def test_chroma_restored_over_its_own_planes_equals_a_separate_output():
    """Cb/Cr written back band by band over the planes the network reads (the product's colour
    path) give exactly the separately computed output, odd sizes included."""
    from arcnn.registry import load_named
    from arcnn.tiling import restore_in_place

    net, _ = load_named("random:chroma")
    ycc = RNG.uniform(0, 255, (3, 171, 133)).astype(np.float32)
    stack = lambda: [*ycc, *condition_planes(20, True, ycc.shape[1:])]  # noqa: E731
    expected = restore_planes(net, [stack()], tile=64, batch_size=1, workers=2)[0]
    restore_in_place(net, stack(), [ycc[1], ycc[2]], tile=64, batch_size=1, workers=2)
    assert np.array_equal(ycc[1:], expected)
