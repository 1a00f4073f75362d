"""``arcnn run``: the embedded job (no broker), on local folders and on S3 over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from worker_support import BUCKET, MODEL, base_env, bucket, cli, jpeg, s3  # noqa: F401 (fixtures)


def _env(**overrides: str) -> dict[str, str]:
    return base_env("redis://127.0.0.1:1/0", "http://127.0.0.1:1", **overrides)  # neither is used


def _tree(root: Path) -> None:
    for i, name in enumerate(["a.jpg", "sub/b.JPG", "sub/deep/c.jpeg"]):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg(i))
    (root / "notes.txt").write_text("not an image, not selected")
    (root / "broken.jpg").write_bytes(jpeg(7)[:300])


def test_run_local_mirrors_tree_skips_done_and_overwrites(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    _tree(src)
    first = cli(_env(), "run", f"file://{src}", "--dest", str(dest), "--model", MODEL, "--json", check=False)
    assert first.returncode == 1  # one key failed
    summary = json.loads(first.stdout)
    assert (summary["total"], summary["done"], summary["skipped"], summary["failed"]) == (4, 3, 0, 1)
    assert summary["failed_keys"]["broken.jpg"]["reason"] == "bad_image"
    outputs = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.png"))
    assert outputs == ["a.png", "sub/b.png", "sub/deep/c.png"]
    assert Image.open(dest / "sub/deep/c.png").size == (48, 40)
    meta = json.loads((dest / ".arcnn-meta/a.png.json").read_text())
    assert meta["arcnn-model"] == MODEL and meta["arcnn-source-size"] == str((src / "a.jpg").stat().st_size)

    again = json.loads(cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json",
                           check=False).stdout)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 3, 1)

    (src / "a.jpg").write_bytes(jpeg(42))  # a changed source is redone even without --overwrite
    changed = json.loads(cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json",
                             check=False).stdout)
    assert (changed["done"], changed["skipped"]) == (1, 2)

    forced = json.loads(cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json",
                            "--overwrite", "--format", "webp", "--include", "sub/**", check=False).stdout)
    assert (forced["total"], forced["done"]) == (2, 2)
    assert (dest / "sub/b.webp").exists() and not (dest / "a.webp").exists()


def test_run_refuses_overlap_unless_asked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    refused = cli(_env(), "run", str(src), "--dest", str(src / "out"), "--model", MODEL, check=False)
    assert refused.returncode == 2 and "overlaps" in refused.stderr
    allowed = cli(_env(), "run", str(src), "--dest", str(src / "out"), "--model", MODEL,
                  "--allow-overlap", "--json", check=False)
    assert json.loads(allowed.stdout)["done"] == 3
    rerun = json.loads(cli(_env(), "run", str(src), "--dest", str(src / "out"), "--model", MODEL,
                           "--allow-overlap", "--json", check=False).stdout)
    assert rerun["total"] == 4  # its own outputs under src/out are never picked up as inputs


def test_run_s3_to_s3_over_http(bucket) -> None:  # noqa: F811
    for i in range(5):
        bucket.put(f"in/{i}.jpg", jpeg(i))
    bucket.put("in-other/x.jpg", jpeg(9))  # a sibling prefix, not under in/
    env = base_env("redis://127.0.0.1:1/0", bucket.url, ARCNN_INFER_THREADS="2")  # shared batches
    result = json.loads(cli(env, "run", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/out",
                            "--model", MODEL, "--format", "jpeg", "--json").stdout)
    assert (result["total"], result["done"]) == (5, 5)
    assert bucket.keys("out/") == [f"out/{i}.jpg" for i in range(5)]
    head = bucket.head("out/3.jpg")
    source = bucket.head("in/3.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"]["arcnn-source-etag"] == source["ETag"].strip('"')
    assert head["Metadata"]["arcnn-model"] == MODEL
    again = json.loads(cli(env, "run", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/out",
                           "--model", MODEL, "--format", "jpeg", "--json").stdout)
    assert (again["done"], again["skipped"]) == (0, 5)


def test_keys_that_collide_after_the_extension_change_all_survive_and_a_rerun_restores_nothing(
        tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    for i, name in enumerate(["a.jpg", "a.jpeg", "a.JPG", "a.png", "b.jpg"]):
        (src / name).write_bytes(jpeg(i))
    first = json.loads(cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json").stdout)
    assert (first["total"], first["done"]) == (5, 5)
    assert sorted(p.name for p in dest.glob("*.png")) == [
        "a.JPG.png", "a.jpeg.png", "a.jpg.png", "a.png.png", "b.png"]
    again = json.loads(cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json").stdout)
    assert (again["done"], again["skipped"]) == (0, 5)


def test_animated_images_are_refused_with_a_reason_not_flattened_to_frame_0(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    frames = [Image.new("RGB", (48, 40), colour) for colour in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    for name, fmt in (("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("anim.png", "PNG")):
        frames[0].save(src / name, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(src / "still.gif", "GIF")
    result = cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json", check=False)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert (summary["total"], summary["done"], summary["failed"]) == (4, 1, 3)
    for name in ("anim.gif", "anim.webp", "anim.png"):
        failure = summary["failed_keys"][name]
        assert failure["reason"] == "animated" and "3 frames" in failure["error"], failure
    assert sorted(p.name for p in dest.glob("*.png")) == ["still.png"]


def test_what_a_format_cannot_hold_is_written_with_a_warning_in_the_report(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    Image.new("RGBA", (48, 40), (10, 200, 30, 128)).save(src / "alpha.png")
    Image.new("I;16", (48, 40), 40000).save(src / "deep.png")
    (src / "plain.jpg").write_bytes(jpeg(1))
    result = cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--format", "jpeg", "--json")
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["warned"]) == (3, 2)
    assert "alpha dropped" in summary["warnings"]["alpha.png"]
    assert "16-bit" in summary["warnings"]["deep.png"]
    assert Image.open(dest / "alpha.jpg").mode == "RGB"
    text = cli(_env(), "run", str(src), "--dest", str(tmp_path / "again"), "--model", MODEL, "--format", "jpeg")
    assert "warned 2" in text.stdout and "WARNING alpha.png: alpha dropped" in text.stderr


def test_run_says_what_happened_to_each_key_and_takes_the_restore_flags(tmp_path: Path) -> None:
    """One line per key, as `arcnn restore` prints (what ran and why, skipped and why, failed and
    why); --tile/--device/... override the settings for this run; --quiet leaves the summary."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    _tree(src)
    first = cli(_env(ARCNN_CHROMA="restore", ARCNN_DEVICE="cuda"), "run", str(src), "--dest", str(dest), "--model", MODEL,
                "--tile", "64", "--batch-size", "2", "--device", "cpu", "--precision", "fp32",
                "--tier", "fast", "--chroma", "passthrough", check=False)
    assert first.returncode == 1, first.stderr
    lines = {line.split(" ")[0].rstrip(":"): line for line in first.stdout.splitlines()[:-1]}
    assert lines["sub/b.JPG"] == f"sub/b.JPG -> sub/b.png: {MODEL} (named)"  # no +colour: --chroma won
    assert lines["broken.jpg"].startswith("broken.jpg: failed (bad_image: ")
    assert first.stdout.splitlines()[-1].startswith("total 4  done 3  passed through 0  skipped 0  failed 1")
    again = cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, check=False)
    assert "a.jpg -> a.png: skipped (output already written from this source)" in again.stdout
    quiet = cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--quiet", check=False)
    assert quiet.stdout.startswith("total 4") and len(quiet.stdout.splitlines()) == 1
    assert "FAILED broken.jpg: bad_image" in quiet.stderr
    scripted = cli(_env(), "run", str(src), "--dest", str(dest), "--model", MODEL, "--json", check=False)
    assert json.loads(scripted.stdout)["skipped"] == 3 and "a.jpg -> a.png: skipped" in scripted.stderr
    bad = cli(_env(), "run", str(src), "--dest", str(dest), "--tile", "8", check=False)
    assert bad.returncode == 2 and "--tile" in bad.stderr
