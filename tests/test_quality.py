"""JPEG quality estimation round trips through Pillow's encoder at every quality."""

import io

import numpy as np
import pytest
from PIL import Image

from arcnn.quality import estimate_quality
from arcnn.restoration import nearest_quality_model

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


def test_nearest_model():
    names = ["jpeg-q10", "jpeg-q20", "jpeg-q40", "jpeg-any"]
    assert nearest_quality_model(12, names) == "jpeg-q10"
    assert nearest_quality_model(15, names) == "jpeg-q10"
    assert nearest_quality_model(95, names) == "jpeg-q40"
    assert nearest_quality_model(None, names) is None
