"""The paper protocol reproduces the published JPEG figures on LIVE1 (needs ../shared/data)."""

from pathlib import Path

import pytest

from arcnn.evaluation import paper_protocol

LIVE1 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "LIVE1"


@pytest.mark.data
@pytest.mark.skipif(not LIVE1.is_dir(), reason="../shared/data/LIVE1 not present")
def test_jpeg_q10_on_live1_matches_paper():
    result = paper_protocol(None, LIVE1, quality=10)
    assert result["images"] == 29
    assert result["input"]["psnr"] == pytest.approx(27.77, abs=0.01)
    assert result["input"]["psnr_b"] == pytest.approx(25.33, abs=0.02)
    assert result["input"]["ssim"] == pytest.approx(0.7905, abs=0.001)  # 8x8 unweighted windows
