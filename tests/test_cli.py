"""The ``arcnn restore`` / ``eval`` / ``models`` commands, run as a user would."""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from arcnn.acceleration import default_precision

ARCNN = [sys.executable, "-m", "arcnn"]
MODEL = ["--model", "random:9-7-1-5"]


def run(*args, **kw):
    return subprocess.run([*ARCNN, *args], capture_output=True, text=True, **kw)


def _jpeg(path, mode="RGB", size=(40, 33), quality=20):
    arr = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, "JPEG", quality=quality)


def test_restore_folder_skips_bad_files_and_fails_exit_code(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _jpeg(src / "a.jpg")
    _jpeg(src / "gray.jpg", mode="L")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "empty.png").write_bytes(b"")
    result = run("restore", str(src), "-o", str(tmp_path / "out"), *MODEL, "--tile", "64")
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr and "empty.png" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".arcnn-meta", "a.png", "gray.png"]
    assert Image.open(tmp_path / "out" / "gray.png").mode == "L"
    assert Image.open(tmp_path / "out" / "a.png").size == (40, 33)


def test_restore_all_good_exits_zero_with_format(tmp_path):
    _jpeg(tmp_path / "x.jpg")
    result = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), *MODEL, "--format", "webp")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "o" / "x.webp").format == "WEBP"


def test_precision_flag_and_setting(tmp_path):
    _jpeg(tmp_path / "x.jpg")
    outputs = {}
    for precision in ("fp32", "bf16"):
        result = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / precision), *MODEL,
                     "--precision", precision)
        assert result.returncode == 0, result.stderr
        outputs[precision] = np.asarray(Image.open(tmp_path / precision / "x.png"), dtype=int)
    assert np.abs(outputs["fp32"] - outputs["bf16"]).max() <= 1
    env = {**os.environ, "ARCNN_PRECISION": "fp64"}
    result = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), *MODEL, env=env)
    assert result.returncode != 0 and "ARCNN_PRECISION must be one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_is_a_clear_error(tmp_path):
    _jpeg(tmp_path / "x.jpg")
    result = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--model", "nope")
    assert result.returncode != 0 and "unknown model 'nope'" in result.stderr


def test_eval_input_only_json(tmp_path):
    import json

    for i in range(2):
        _jpeg(tmp_path / f"{i}.jpg", size=(48, 40), quality=95)
    result = run("eval", str(tmp_path), "--quality", "10", "--model", "none", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["images"] == 2 and 15 < data["input"]["psnr"] < 40


def test_models_marks_what_auto_uses_and_hides_earlier_stages():
    """Every model the shipped policies name (the JPEG ones, WEBP_POLICY, the chroma networks) is starred; lineage stages
    that a later model continued on the same degradation are listed only with --all."""
    import json

    from arcnn.policy import POLICY_FILES
    from arcnn.registry import bundled
    from arcnn.restoration import WEBP_POLICY

    auto = set(WEBP_POLICY.values()) - {"passthrough"}
    for tier, chroma in (("standard", "colour"), ("fast", "colour-fast")):
        if POLICY_FILES[tier].exists():
            policy = json.loads(POLICY_FILES[tier].read_text())
            auto |= {m for table in policy["luma"].values() for m in table.values()} - {"passthrough"} | {chroma}
    stages = {"jpeg-q10-scratch", "jpeg-q10-stage2", "jpeg-q20-stage1"}
    result = run("models")
    assert result.returncode == 0, result.stderr
    names = bundled().keys()
    rows = {line[2:].split()[0]: line[0] == "*" for line in result.stdout.splitlines()
            if line[2:].split()[:1] and line[2:].split()[0] in names}
    assert auto and {name for name, starred in rows.items() if starred} == auto
    assert not rows.keys() & stages
    assert {"jpeg-any", "platform-twitter"} <= rows.keys() and not rows["jpeg-any"]
    assert "earlier training stages not shown (--all lists them)" in result.stdout
    listed_all = run("models", "--all")
    assert all(f"  {name} " in listed_all.stdout for name in stages)
    cards = json.loads(run("models", "--json").stdout)
    assert auto <= cards.keys() and not cards.keys() & stages and cards["colour"]["name"] == "colour"


def test_earlier_stages_are_same_degradation_ancestors():
    from arcnn.cards import ModelCard
    from arcnn.catalogue import earlier_stages

    q10, q20 = {"type": "jpeg", "quality": 10}, {"type": "jpeg", "quality": 20}
    cards = {c.name: c for c in (
        ModelCard("a-scratch", degradation=q10),
        ModelCard("a", degradation=q10, transfer={"base": "a-scratch"}),
        ModelCard("b", degradation=q20, transfer={"base": "a"}),        # easy-hard transfer
        ModelCard("c", degradation=q20, transfer={"base": "elsewhere.safetensors"}),
    )}
    assert earlier_stages(cards) == {"a-scratch"}


def test_tile_and_batch_size_are_validated_as_usage_errors(tmp_path):
    """--tile -5 / 0 / 1 and --batch-size 0 are usage errors (exit 2, one line naming the
    smallest accepted value), not a traceback, a silent default or minutes of 1-pixel tiles."""
    from click.testing import CliRunner

    from arcnn.cli import main

    _jpeg(tmp_path / "a.jpg")
    for flag, value, smallest in (("--tile", "-5", "64"), ("--tile", "0", "64"), ("--tile", "1", "64"),
                                  ("--batch-size", "0", "1")):
        result = CliRunner().invoke(main, ["restore", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "out"),
                                           *MODEL, flag, value])
        assert result.exit_code == 2, (flag, value, result.output)
        error = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(error) == 1 and smallest in error[0] and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--quality", "10", "--tile", "8"])
    assert result.exit_code == 2


def test_eval_bucket_reports_every_row_with_its_worst_image(tmp_path):
    """--protocol bucket: every row of the grid, mean in / out / gain and the worst image."""
    import json

    from click.testing import CliRunner

    from arcnn.cli import main
    from arcnn.evaluation import BUCKET_ROWS

    data = tmp_path / "gt"
    data.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(2):
        img = np.dstack([(xx * (3 + i)) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256]).astype(np.uint8)
        Image.fromarray(img).save(data / f"{i}.png")
    result = CliRunner().invoke(main, ["eval", str(data), "--protocol", "bucket", "--model", "random:9-1-5",
                                       "--chroma", "passthrough", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["row"] for r in out["rows"]] == [r.name for r in BUCKET_ROWS]
    for r in out["rows"]:
        assert r["worst_gain"] <= r["gain"] and r["worst_image"] in ("0.png", "1.png")
        assert abs(r["restored"] - r["input"] - r["gain"]) < 1e-6
    assert out["worst_gain"] == min(r["worst_gain"] for r in out["rows"])
    table = CliRunner().invoke(main, ["eval", str(data), "--protocol", "bucket", "--model", "none"])
    assert table.exit_code == 0 and "q75 > crop 3 > q50" in table.output


def test_eval_history_measures_the_rows_asked_for(tmp_path):
    """--row picks rows of --protocol history by name; an unknown name lists the rows."""
    import json

    from click.testing import CliRunner

    from arcnn.cli import main

    data = tmp_path / "gt"
    data.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    Image.fromarray(np.dstack([(xx * 3) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256]).astype(np.uint8)).save(
        data / "0.png")
    result = CliRunner().invoke(main, ["eval", str(data), "--protocol", "history", "--model", "random:9-1-5",
                                       "--row", "pristine", "--row", "png of q30", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["row"] for r in out["rows"]] == ["png of q30", "pristine"]
    unknown = CliRunner().invoke(main, ["eval", str(data), "--protocol", "history", "--row", "nope"])
    assert unknown.exit_code == 2 and "'flat tables (10)'" in unknown.output
    assert CliRunner().invoke(main, ["eval", str(data), "--protocol", "bucket", "--row", "pristine"]).exit_code == 2


def test_restore_says_what_happened_to_each_file(tmp_path):
    """One line per file: what ran and why, or passed through and why; --quiet keeps only the
    totals line, which counts passthroughs apart from restored files. The auto choices come from the shipped policy and ARCNN_AUTO_MAX_QUALITY."""
    src = tmp_path / "in"
    src.mkdir()
    _jpeg(src / "low.jpg", quality=10)
    _jpeg(src / "high.jpg", quality=95)
    Image.new("RGB", (20, 20), "white").save(src / "clean.png")
    env = {**os.environ, "ARCNN_AUTO_MAX_QUALITY": "90"}
    result = run("restore", str(src), "-o", str(tmp_path / "out"), "--tile", "64", env=env)
    assert result.returncode == 0, result.stderr
    lines = {line.split(" -> ")[0].rsplit("/", 1)[-1]: line for line in result.stdout.splitlines()}
    assert "jpeg-q10" in lines["low.jpg"] and "(estimated q10, 4:2:0)" in lines["low.jpg"]
    assert lines["high.jpg"].endswith("passthrough (estimated q95, 4:2:0: above the quality cut 90)")
    assert lines["clean.png"].endswith("passthrough (no JPEG tables; pixels: no JPEG grid; "
                                       "grey in a colour file: chroma kept neutral)")
    quiet = run("restore", str(src), "-o", str(tmp_path / "quiet"), "--tile", "64", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("total 3  done 1  passed through 2  skipped 0  failed 0  in ")


def test_fast_tier_picks_fast_models(tmp_path):
    _jpeg(tmp_path / "x.jpg", mode="L", quality=10)
    result = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--tier", "fast", "--tile", "64")
    assert result.returncode == 0, result.stderr
    assert ": fast-arcnn-q10 (estimated q10)" in result.stdout
    bad = run("restore", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--tier", "fastest")
    assert bad.returncode == 2


def test_eval_runs_where_the_settings_say_unless_told(tmp_path):
    """ARCNN_DEVICE and ARCNN_TILE reach `arcnn eval` as they reach restore; its options win."""
    import torch

    _jpeg(tmp_path / "0.jpg", size=(48, 40), quality=95)
    env = {**os.environ, "ARCNN_DEVICE": "cuda" if not torch.cuda.is_available() else "cpu"}
    told = run("eval", str(tmp_path), "--quality", "10", *MODEL, "--device", "cpu", "--json", env=env)
    assert told.returncode == 0, told.stderr
    if not torch.cuda.is_available():
        refused = run("eval", str(tmp_path), "--quality", "10", *MODEL, env=env)
        assert refused.returncode == 1 and "no CUDA device" in refused.stderr


def test_eval_measures_in_fp32_unless_told_whatever_the_cpu(tmp_path):
    """`auto` is bf16 on some CPUs; a figure from `arcnn eval` must not depend on which one ran it,
    nor on ARCNN_PRECISION."""
    _jpeg(tmp_path / "0.jpg", size=(48, 40), quality=95)
    env = {**os.environ, "ARCNN_PRECISION": "bf16"}
    default = run("eval", str(tmp_path), "--quality", "10", *MODEL, "--device", "cpu", "--json", env=env)
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout)["precision"] == "fp32"
    told = run("eval", str(tmp_path), "--quality", "10", *MODEL, "--device", "cpu", "--precision", "auto", "--json")
    assert told.returncode == 0, told.stderr
    assert json.loads(told.stdout)["precision"] == default_precision("cpu")


def test_the_precision_names_are_the_engines():
    from arcnn import acceleration, settings

    assert settings.PRECISIONS == ("auto", *acceleration.PRECISIONS)
