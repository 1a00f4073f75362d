"""Colour transforms."""

import numpy as np
import pytest

from arcnn.colour import rgb_to_studio_y, rgb_to_ycbcr, to_uint8, ycbcr_to_rgb, ycbcr_to_rgb_uint8


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(0).uniform(0, 255, (20, 20, 3))
    assert np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-9)


def test_jfif_reference_values():
    assert rgb_to_ycbcr(np.array([255.0, 255, 255])) == pytest.approx([255, 128, 128])
    assert rgb_to_ycbcr(np.array([255.0, 0, 0])) == pytest.approx([76.245, 84.972, 255.5], abs=1e-3)


def test_studio_range_matches_matlab():
    assert rgb_to_studio_y(np.array([0.0, 0, 0])) == pytest.approx(16)
    assert rgb_to_studio_y(np.array([255.0, 255, 255])) == pytest.approx(235)


def test_to_uint8_rounds_half_up_and_clips():
    assert to_uint8(np.array([-3, 0.5, 1.49, 254.5, 300])).tolist() == [0, 1, 1, 255, 255]


def test_banded_conversion_equals_whole_image_conversion():
    """The restore path converts back to RGB a band of rows at a time (memory); bands must not
    change a single pixel, including at band edges and a short last band."""
    ycc = np.random.default_rng(1).uniform(-20, 275, (37, 11, 3))
    whole = to_uint8(ycbcr_to_rgb(ycc))
    for band in (1, 8, 36, 37, 100):
        assert np.array_equal(ycbcr_to_rgb_uint8(ycc, band=band), whole), band


def test_to_uint8_leaves_its_input_alone():
    x = np.array([[0.4, 254.6]], dtype=np.float32)
    assert to_uint8(x).tolist() == [[0, 255]] and x.tolist() == [[np.float32(0.4), np.float32(254.6)]]


def test_float32_planes_convert_as_the_float64_image_does():
    """The product's planes path gives the float64 (H, W, 3) functions' result to float32
    precision, and the same pixels back in uint8 (band edges included), alpha appended as is."""
    from arcnn.colour import rgb_to_ycbcr_planes, ycbcr_planes_to_rgb_uint8

    rgb = np.random.default_rng(3).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    planes = rgb_to_ycbcr_planes(rgb, band=8)
    assert planes.dtype == np.float32 and planes.shape == (3, 37, 29)
    assert np.allclose(np.moveaxis(planes, 0, -1), rgb_to_ycbcr(rgb), atol=1e-4)
    assert np.array_equal(ycbcr_planes_to_rgb_uint8(planes, band=8), rgb)
    alpha = np.arange(37 * 29, dtype=np.uint8).reshape(37, 29)
    rgba = ycbcr_planes_to_rgb_uint8(planes, alpha, band=5)
    assert np.array_equal(rgba[..., :3], rgb) and np.array_equal(rgba[..., 3], alpha)


def test_to_uint8_in_scratch_mode_rounds_the_same():
    x = np.array([-3.0, 0.49, 0.5, 127.5, 254.5, 300.0], dtype=np.float32)
    expected = to_uint8(x.copy())
    assert np.array_equal(to_uint8(x, scratch=True), expected)
