"""``arcnn eval`` reports progress per image (the paper and color protocols ran 1-2 minutes in
silence): the protocols call back once per image measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.evaluation import color_protocol, paper_protocol


def test_paper_and_color_protocols_report_each_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    for protocol in (paper_protocol, color_protocol):
        seen: list[int] = []
        result = protocol(None, tmp_path, 20, progress=seen.append)
        assert seen == [0, 1, 2] and result["images"] == 3, protocol.__name__
