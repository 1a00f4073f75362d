"""JPEG quality estimation round trips through Pillow's encoder at every quality."""

import io

import numpy as np
import pytest
from PIL import Image

from arcnn.quality import estimate_quality
from arcnn.restoration import PASSTHROUGH, auto_model

IMG = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def _encoded(quality, img=IMG, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("quality", range(1, 101))
def test_round_trip_every_quality(quality):
    assert abs(estimate_quality(_encoded(quality).quantization) - quality) <= 1


def test_grayscale_has_only_luma_table():
    assert estimate_quality(_encoded(37, IMG.convert("L")).quantization) == 37


def test_custom_tables_are_unknown():
    custom = {0: list(range(1, 65)), 1: list(range(1, 65))}
    assert estimate_quality(custom) is None
    assert estimate_quality(_encoded(50, qtables=[[3] * 64, [5] * 64]).quantization) is None
    assert estimate_quality(None) is None


def test_auto_model_passes_through_what_no_model_improves():
    names = ["jpeg-q10", "jpeg-q20", "jpeg-q40", "jpeg-any"]
    assert auto_model(30, names, PASSTHROUGH, 75) == "jpeg-q20"  # ties go to the harder model
    assert auto_model(75, names, PASSTHROUGH, 75) == "jpeg-q40"
    assert auto_model(76, names, PASSTHROUGH, 75) == PASSTHROUGH  # faint artifacts: leave alone
    assert auto_model(None, names, PASSTHROUGH, 75) == PASSTHROUGH  # PNG, WebP: no tables
    assert auto_model(None, names, "platform-webp", 75) == "platform-webp"  # the operator knows
    assert auto_model(20, ["jpeg-any"], "jpeg-any", 75) == "jpeg-any"  # no quality model bundled


def test_auto_policy_table_measures_every_input_and_model():
    """The measurement behind docs/model-choice.md, on two synthetic planes."""
    from training.studies.input_gains import gains, markdown, parse_input

    rng = np.random.default_rng(1)
    planes = [np.kron(rng.integers(0, 256, (6, 6)), np.ones((8, 8))).astype(np.uint8) for _ in range(2)]
    table = gains(planes, ["random:9-1-5"], [parse_input("jpeg-30"), parse_input("webp-50"), parse_input("none")])
    assert list(table) == ["jpeg-30", "webp-50", "none"]
    assert table["jpeg-30"]["input"] < table["webp-50"]["input"] < table["none"]["input"] == float("inf")
    assert np.isfinite(table["jpeg-30"]["random:9-1-5"]) and np.isfinite(table["webp-50"]["random:9-1-5"])
    rows = markdown(table).splitlines()
    assert "(" in rows[2] and "(" not in rows[4]  # gains in brackets, except against a clean input
    with pytest.raises(ValueError, match="bad input"):
        parse_input("gif-3")
