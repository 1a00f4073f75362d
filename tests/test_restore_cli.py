"""``arcnn restore`` as a user runs it: inputs never overwritten, outputs never inputs, the
options for where and how outputs are written, and the summary it shares with ``arcnn run``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from PIL import Image

from image_support import MODEL, arcnn, jpeg


def _photos(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg(1))
    (root / "b.jpg").write_bytes(jpeg(2, quality=95))  # passed through by auto
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "nested" / "c.jpg").write_bytes(jpeg(3))
    (root / "nested" / "deeper" / "d.jpg").write_bytes(jpeg(4))
    return root


def _md5s(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_restore_into_its_own_folder_never_overwrites_an_input(tmp_path: Path) -> None:
    """`restore photos -o photos --format jpeg` replaced b.jpg. Now it needs --allow-overlap, and
    even then b.jpg -> b.jpg is refused, in its line and in the exit code."""
    photos = _photos(tmp_path / "photos")
    before = _md5s(photos)
    refused = arcnn("restore", str(photos), "-o", str(photos), "--format", "jpeg")
    assert refused.returncode == 2 and b"overlaps" in refused.stderr
    allowed = arcnn("restore", str(photos), "-o", str(photos), "--format", "jpeg", "--allow-overlap", "--json")
    assert allowed.returncode == 1
    summary = json.loads(allowed.stdout)
    assert {k: v["reason"] for k, v in summary["failed_keys"].items()} == dict.fromkeys(
        [str(photos / k) for k in ("a.jpg", "b.jpg", "nested/c.jpg", "nested/deeper/d.jpg")], "overwrite_source")
    assert _md5s(photos) == before


def test_an_output_folder_inside_the_input_is_never_read_as_input(tmp_path: Path) -> None:
    """A second `restore photos -o photos/restored` restored its own outputs into
    photos/restored/restored/. Now the second run finds everything done."""
    photos = _photos(tmp_path / "photos")
    first = json.loads(arcnn("restore", str(photos), "-o", str(photos / "restored"), "--allow-overlap",
                             "--model", MODEL, "--json").stdout)
    assert (first["total"], first["done"]) == (4, 4)
    again = json.loads(arcnn("restore", str(photos), "-o", str(photos / "restored"), "--allow-overlap",
                             "--model", MODEL, "--json").stdout)
    assert (again["total"], again["skipped"]) == (4, 4)
    assert not (photos / "restored" / "restored").exists()


def test_include_suffix_quality_and_dry_run(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    dry = arcnn("restore", str(photos), "-o", str(out), "--include", "nested/*.jpg", "--model", MODEL,
                "--suffix", "_clean", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.decode().splitlines()[0] == f"{photos}/nested/c.jpg -> {out}/nested/c_clean.png: {MODEL} (named)"
    assert "(dry run: nothing written)" in dry.stdout.decode() and not out.exists()
    real = arcnn("restore", str(photos), "-o", str(out), "--include", "nested/**/*.jpg", "--model", MODEL,
                 "--suffix", "_clean", "--format", "webp", "--output-quality", "30")
    assert real.returncode == 0, real.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.webp")) == [
        "nested/c_clean.webp", "nested/deeper/d_clean.webp"]
    best = arcnn("restore", str(photos / "nested" / "c.jpg"), "-o", str(tmp_path / "best.webp"), "--model", MODEL,
                 "--output-quality", "100")
    assert best.returncode == 0, best.stderr
    assert (tmp_path / "best.webp").stat().st_size > (out / "nested" / "c_clean.webp").stat().st_size


def test_o_file_for_a_single_input_and_dash_for_pipes(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    single = arcnn("restore", str(photos / "a.jpg"), "-o", str(tmp_path / "result.png"), "--model", MODEL)
    assert single.returncode == 0, single.stderr
    assert Image.open(tmp_path / "result.png").format == "PNG" and (tmp_path / "result.png").is_file()
    as_jpeg = arcnn("restore", str(photos / "a.jpg"), "-o", str(tmp_path / "result.jpg"), "--model", MODEL)
    assert as_jpeg.returncode == 0 and Image.open(tmp_path / "result.jpg").format == "JPEG"
    clash = arcnn("restore", str(photos / "a.jpg"), "-o", str(tmp_path / "r.png"), "--format", "jpeg")
    assert clash.returncode == 2 and b"--format is jpeg" in clash.stderr
    two = arcnn("restore", str(photos / "a.jpg"), str(photos / "b.jpg"), "-o", str(tmp_path / "r.png"))
    assert two.returncode == 2 and b"single input" in two.stderr and not (tmp_path / "r.png").exists()
    piped = arcnn("restore", "-", "-o", "-", "--model", MODEL, "--format", "jpeg", stdin=jpeg(5))
    assert piped.returncode == 0, piped.stderr
    assert Image.open(__import__("io").BytesIO(piped.stdout)).format == "JPEG"
    assert b"- -> -: " + MODEL.encode() in piped.stderr  # lines and summary go to stderr
    untouched = jpeg(6, quality=95)
    kept = arcnn("restore", "-", "-o", "-", "--format", "keep", stdin=untouched)
    assert kept.returncode == 0 and kept.stdout == untouched  # passed through: the same bytes
    into_folder = arcnn("restore", "-", "-o", str(tmp_path / "piped"), "--model", MODEL, stdin=jpeg(5))
    assert into_folder.returncode == 0 and (tmp_path / "piped" / "stdin.png").is_file()


def test_restore_and_run_print_the_same_summary_and_count_passthroughs_apart(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    restored = arcnn("restore", str(photos), "-o", str(tmp_path / "r"))
    ran = arcnn("run", str(photos), "--dest", str(tmp_path / "w"))
    assert restored.returncode == ran.returncode == 1
    for result in (restored, ran):
        text = result.stdout.decode()
        assert "  passed through " in text and "restored by jpeg-q20+colour" in text
        last = text.splitlines()[-1]
        assert last.startswith("total 5  done 3  passed through 1  skipped 0  failed 1  in ") and last.endswith(" MP/s")
        assert b"FAILED " in result.stderr and b"bad_image" in result.stderr
    summaries = [json.loads(arcnn(command, str(photos), flag, str(tmp_path / f"j{command}"), "--json").stdout)
                 for command, flag in (("restore", "-o"), ("run", "--dest"))]
    for summary in summaries:
        assert (summary["done"], summary["passed_through"], summary["failed"]) == (3, 1, 1)
        assert summary["models"] == {"jpeg-q20+colour": 3} and summary["megapixels"] > 0
    assert summaries[0].keys() == summaries[1].keys()


def test_run_with_dest_equal_to_source_lists_the_same_keys_every_time(tmp_path: Path) -> None:
    """Issue 25, item 5, through `arcnn run`: 3 -> 5 -> 9 keys before; now 3, 3, 3."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(jpeg(i))
    before = _md5s(photos)
    totals = [json.loads(arcnn("run", str(photos), "--dest", str(photos), "--allow-overlap", "--model", MODEL,
                               "--json").stdout) for _ in range(3)]
    assert [(s["total"], s["done"], s["skipped"]) for s in totals] == [(3, 3, 0), (3, 0, 3), (3, 0, 3)]
    assert {k: v for k, v in _md5s(photos).items() if k in before} == before


def test_each_line_and_the_summary_say_what_was_read(tmp_path: Path) -> None:
    """A PNG of a JPEG and a q30 photo re-saved at q90 are restored by the quality their pixels
    show, and say so; a never-compressed PNG passes through pixel-identical; the summary counts
    where each history was read from."""
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((192, 144), Image.BICUBIC)
    noisy = np.clip(np.asarray(smooth, dtype=np.float64) + rng.normal(0, 3, (144, 192, 3)), 0, 255)
    photo = Image.fromarray(noisy.astype(np.uint8))

    def saved(img: Image.Image, **params: object) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", **params)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    src = tmp_path / "in"
    src.mkdir()
    saved(photo, quality=30).save(src / "export.png")
    saved(photo, quality=30).save(src / "resaved.jpg", quality=90)
    photo.save(src / "pristine.png")
    result = arcnn("restore", str(src), "-o", str(tmp_path / "out"), "--tile", "64")
    assert result.returncode == 0, result.stderr
    lines = {line.split(" -> ")[0].rsplit("/", 1)[-1]: line for line in result.stdout.decode().splitlines()
             if " -> " in line}
    assert "jpeg-q30+colour (pixels: JPEG ~q3" in lines["export.png"] and "no JPEG tables" in lines["export.png"]
    assert "(pixels: JPEG ~q3" in lines["resaved.jpg"] and "file tables q90" in lines["resaved.jpg"]
    assert "passthrough (no JPEG tables; pixels: no JPEG grid" in lines["pristine.png"]
    out = tmp_path / "out" / "pristine.png"
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(photo))
    summary = json.loads(arcnn("restore", str(src), "-o", str(tmp_path / "again"), "--tile", "64",
                               "--json").stdout)
    assert summary["read_from"] == {"none": 1, "pixels": 2}
