"""One input-selection and output-naming rule (arcnn/naming.py) for restore, run and queued jobs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from arcnn.jobs.listing import selected
from arcnn.jobs.locations import parse_location
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.storage import LocalStorage
from arcnn.naming import IMAGE_SUFFIXES, is_image_name, output_extension, output_names
from image_support import MODEL, arcnn, jpeg

COLLIDING = ["a.jpg", "a.jpeg", "a.JPG", "a.png"]


def names(keys: list[str], extension: str = ".png") -> dict[str, str | None]:
    return {n.relative: n.name for group in output_names(sorted(keys), lambda k: k, extension) for n in group}


def test_stems_that_collide_keep_their_extension_and_nothing_else_changes() -> None:
    got = names([*COLLIDING, "b.jpg", "sub/a.jpg", "a.b.jpg", "c", "c.png"])
    assert got == {
        "a.jpg": "a.jpg.png", "a.jpeg": "a.jpeg.png", "a.JPG": "a.JPG.png", "a.png": "a.png.png",
        "b.jpg": "b.png", "sub/a.jpg": "sub/a.png", "a.b.jpg": "a.b.png",
        "c": "c.png", "c.png": "c.png.png",
    }
    # A name that still clashes is refused for the later key, named after the one that kept it.
    group = [n for g in output_names(sorted(["x.jpg", "x.png", "x.jpg.png"]), lambda k: k, ".png") for n in g]
    clashing = {n.relative: n.clash for n in group if n.name is None}
    assert clashing == {"x.jpg.png": "x.jpg"}


def test_names_are_the_same_however_the_listing_is_cut_between_groups() -> None:
    rng = random.Random(3)
    stems = [f"{rng.choice('ab')}{rng.choice(['', '.x', '.y'])}" for _ in range(40)]
    keys = sorted({s + rng.choice([".jpg", ".png", ".JPG", ".webp", ""]) for s in stems} | {"a.x.y.jpg"})
    whole = names(keys)
    groups = list(output_names(keys, lambda k: k, ".png"))
    for cut in range(1, len(groups)):  # resume after the last key of group `cut - 1`
        last = groups[cut - 1][-1].relative
        resumed = names(keys[: keys.index(last) + 1]) | names(keys[keys.index(last) + 1:])
        assert resumed == whole, cut
    assert len(set(n for n in whole.values() if n)) == sum(1 for n in whole.values() if n)


def test_selection_is_one_list_of_suffixes_in_any_case() -> None:
    for suffix in IMAGE_SUFFIXES:
        assert is_image_name("x" + suffix) and is_image_name("x" + suffix.upper())
    assert {".jpe", ".gif", ".jfif"} <= set(IMAGE_SUFFIXES)
    assert not is_image_name("notes.txt") and not is_image_name("jpg")


def _tree(root: Path) -> None:
    files = {"a.jpg": jpeg(1), "a.png": jpeg(2), "x.jpe": jpeg(3), "sub/deep/y.JPG": jpeg(4),
             "sub/a.jpg": jpeg(5)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "notes.txt").write_text("not an image")
    from PIL import Image

    Image.new("RGB", (48, 40), (9, 99, 199)).save(root / "still.gif")


def _outputs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".arcnn-meta" not in p.parts)


def test_keep_and_suffix_name_each_output_after_its_own_input() -> None:
    keep = {n.relative: n.name for g in output_names(["a.JPG", "a.gif", "a.png", "b.webp", "c.tif"], lambda k: k,
                                                         lambda key: output_extension("keep", key), "_x") for n in g}
    # a.gif becomes a PNG, like a.png: those two keep their extension; a.JPG keeps its own name.
    assert keep == {"a.JPG": "a_x.JPG", "a.gif": "a.gif_x.png", "a.png": "a.png_x.png",
                    "b.webp": "b_x.webp", "c.tif": "c_x.png"}


def test_selection_walks_folders_in_listing_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    storage = LocalStorage(parse_location(str(src)))
    keys = [obj.key for obj in selected(storage, LocalStorage(parse_location(str(tmp_path / "out"))),
                                        JobSpec(str(src), "out"))]
    assert keys == ["a.jpg", "a.png", "still.gif", "sub/a.jpg", "sub/deep/y.JPG", "x.jpe"]


@pytest.mark.cli
def test_restore_dir_and_run_dir_select_and_name_the_same(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    restored = arcnn("restore", str(src), "-o", str(tmp_path / "r"), "--model", MODEL)
    assert restored.returncode == 0, restored.stderr
    ran = json.loads(arcnn("run", str(src), "--dest", str(tmp_path / "w"), "--model", MODEL, "--json").stdout)
    assert ran["done"] == 6
    expected = ["a.jpg.png", "a.png.png", "still.png", "sub/a.png", "sub/deep/y.png", "x.png"]
    assert _outputs(tmp_path / "r") == _outputs(tmp_path / "w") == expected


@pytest.mark.cli
def test_restore_refuses_a_second_input_with_the_same_name(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p.jpg").write_bytes(jpeg(len(folder)))
    result = arcnn("restore", str(tmp_path / "one"), str(tmp_path / "two"), "-o", str(tmp_path / "out"),
                   "--model", MODEL)
    assert result.returncode == 1 and b"taken by 'p.jpg'" in result.stderr
    assert _outputs(tmp_path / "out") == ["p.jpg.png"]
