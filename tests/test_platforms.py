"""Platform profiles: parsing and validation, what they do to an image, and `arcnn train --platform`."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arcnn.cli import main
from training.data import make_pair
from training.degradations import JPEG, Resize, WebP
from training.platforms import (ProfileError, available_profiles, equivalent_quality, load_profile, nearest_standard,
                                parse_profile, standard_models)
from training.studies.platforms import auto_choice, evaluate_platform, markdown_rows


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus texture: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / (6 + seed)) + 40 * np.cos(yy / 9)
    rgb = np.stack([base, base[::-1], 255 - base], -1) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("originals")
    for split, n in (("train", 3), ("val", 2)):
        (root / split).mkdir()
        for i in range(n):
            _photo(120, 90, i).save(root / split / f"{i}.png")
    return root


def _write(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_shipped_profiles_are_valid_and_cover_jpeg_and_webp():
    assert {"twitter", "messenger", "webp"} <= set(available_profiles())
    codecs = set()
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.description and profile.assumptions
        codecs |= {type(p).__name__ for p in profile.passes}
    assert codecs == {"JPEG", "WebP"}


def test_twitter_fits_600x450_then_jpeg():
    profile = load_profile("twitter")
    assert profile.resize == Resize(box=(600, 450), filter="bicubic")
    assert profile.passes == (JPEG(75, "4:2:0"),)
    chain = profile.degradation()
    assert chain(_photo(800, 600)).size == (600, 450)
    assert chain(_photo(1000, 500)).size == (600, 300)
    assert chain(_photo(300, 200)).size == (300, 200)  # never enlarged
    assert chain(_photo(800, 600)).format == "JPEG"


def test_messenger_caps_long_side_and_reencodes():
    profile = load_profile("messenger")
    assert profile.passes == (JPEG(70, "4:2:0"), JPEG(70, "4:2:0"))
    assert profile.degradation()(_photo(2000, 1000)).size == (1600, 800)


def test_webp_profile_is_not_jpeg():
    profile = load_profile("webp")
    assert profile.passes == (WebP(25),)
    out = profile.degradation()(_photo(64, 48))
    assert out.format == "WEBP" and out.size == (64, 48)


def test_platform_pairs_resize_the_target_too():
    clean, degraded = make_pair(_photo(800, 600), load_profile("twitter").degradation(), colour=True)
    assert clean.shape == degraded.shape == (450, 600)
    assert 25 < 10 * np.log10(255**2 / np.mean((clean.astype(float) - degraded) ** 2)) < 60


@pytest.mark.parametrize("text, message", [
    ('[encode]\ncodec = "heic"\nquality = 50\n', "codec"),
    ('[encode]\ncodec = "jpeg"\nquality = 0\n', "quality"),
    ('[encode]\ncodec = "jpeg"\nquality = 50.5\n', "quality"),
    ('[encode]\ncodec = "jpeg"\nquality = 50\nsubsampling = "4:1:1"\n', "subsampling"),
    ('[encode]\ncodec = "webp"\nquality = 50\nsubsampling = "4:4:4"\n', "always 4:2:0"),
    ('[encode]\ncodec = "jpeg"\nquality = 50\nqualty = 3\n', "unknown key(s) qualty"),
    ('colour = true\n[encode]\ncodec = "jpeg"\nquality = 50\n', "unknown key(s) colour"),
    ('name = "x"\n', "missing key(s) encode"),
    ('name = "Bad Name"\n[encode]\ncodec = "jpeg"\nquality = 50\n', "name"),
    ('[resize]\nrule = "box"\nlong_side = 600\n[encode]\ncodec = "jpeg"\nquality = 50\n', "takes box"),
    ('[resize]\nrule = "fit"\n[encode]\ncodec = "jpeg"\nquality = 50\n', "rule"),
    ('[resize]\nrule = "box"\nbox = [600]\n[encode]\ncodec = "jpeg"\nquality = 50\n', "[width, height]"),
    ('[resize]\nrule = "long_side"\nlong_side = 800\nfilter = "sinc"\n[encode]\ncodec = "jpeg"\nquality = 50\n',
     "filter"),
    ('[encode]\ncodec = "jpeg"\nquality = 50\n[[reencode]]\ncodec = "jpeg"\nquality = 500\n',
     "reencode[0].quality"),
    ('[encode\ncodec = "jpeg"\n', "not valid TOML"),
])
def test_bad_profiles_are_rejected_with_the_key(tmp_path, text, message):
    with pytest.raises(ProfileError) as info:
        load_profile(_write(tmp_path, text))
    assert message in str(info.value) and "p.toml" in str(info.value)


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match="twitter"):
        load_profile("no-such-platform")


def test_minimal_profile_defaults(tmp_path):
    profile = load_profile(_write(tmp_path, '[resize]\nrule = "none"\n[encode]\ncodec = "jpeg"\nquality = 40\n'))
    assert profile.name == "p" and profile.resize is None and profile.passes == (JPEG(40, "4:2:0"),)


def test_equivalent_quality_and_nearest_standard(monkeypatch, tmp_path):
    images = [_photo(96, 96, i) for i in range(3)]
    jpeg30 = parse_profile({"encode": {"codec": "jpeg", "quality": 30}}, tmp_path / "q30.toml")
    assert equivalent_quality(jpeg30, images, [10, 30, 60]) == 30
    monkeypatch.setattr("training.platforms.standard_models", lambda architecture=None: {"jpeg-q10": 10, "jpeg-q60": 60})
    paths = []
    for i, img in enumerate(images):
        img.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    mild = parse_profile({"encode": {"codec": "jpeg", "quality": 70}}, tmp_path / "q70.toml")
    assert nearest_standard(mild, paths) == "jpeg-q60"
    assert nearest_standard(parse_profile({"encode": {"codec": "webp", "quality": 1}}, tmp_path / "w.toml"),
                            paths) == "jpeg-q10"


def test_train_platform_end_to_end(folders, tmp_path):
    """`arcnn train --platform FILE` on a user's own folders, default recipe, transfer from a base."""
    torch.set_num_threads(1)
    profile = _write(tmp_path, 'name = "tiny"\ndescription = "test"\n[resize]\nrule = "box"\nbox = [100, 75]\n'
                               '[encode]\ncodec = "webp"\nquality = 30\n')
    export = tmp_path / "out" / "platform-tiny.safetensors"
    result = CliRunner().invoke(main, [
        "train", "--platform", str(profile), "--base", "random:9-7-1-5", "--train-dir", str(folders / "train"),
        "--val-dir", str(folders / "val"), "--steps", "3", "--run-dir", str(tmp_path / "run"),
        "--export", str(export), "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 0, result.output
    assert "platform-tiny: 3 steps" in result.output
    card = json.loads(export.with_suffix(".json").read_text())
    assert card["name"] == "platform-tiny" and card["trained"] and card["steps"] == 3
    assert card["transfer"] == {"base": "random:9-7-1-5", "layers": [0, 1, 2, 3], "freeze": False}
    assert card["training_data"]["colour"] is True
    assert card["degradation"]["steps"][0] == {"type": "resize", "long_side": None, "box": [100, 75],
                                               "filter": "bicubic"}
    assert card["platform"]["name"] == "tiny" and card["platform"]["degradation"]["steps"][1]["type"] == "webp"
    assert "base_card" not in card["transfer"]  # a random: base has no card to keep
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("3,48,")  # one validation at the end, batch 16


def test_train_platform_reports_bad_profiles_and_needs_a_config_or_platform(tmp_path):
    bad = _write(tmp_path, '[encode]\ncodec = "gif"\nquality = 50\n')
    result = CliRunner().invoke(main, ["train", "--platform", str(bad)])
    assert result.exit_code != 0 and "codec" in result.output
    result = CliRunner().invoke(main, ["train"])
    assert result.exit_code != 0 and "--platform" in result.output
    result = CliRunner().invoke(main, ["train", "--config", "training/configs/jpeg-q10.toml", "--base", "x"])
    assert result.exit_code != 0 and "go with --platform" in result.output


def test_evaluate_platform_compares_input_and_models(folders):
    torch.set_num_threads(1)
    result = evaluate_platform(load_profile("webp"), folders / "val", ["random:9-1-5"])
    assert result["images"] == 2 and set(result["models"]) == {"random:9-1-5"}
    # An untrained residual net with tiny weights is nearly the identity: it matches the input.
    assert abs(result["models"]["random:9-1-5"]["psnr"] - result["input"]["psnr"]) < 0.05
    rows = markdown_rows(result)
    assert rows[0].startswith("| webp | degraded input |") and "`random:9-1-5`" in rows[1]


def test_auto_choice_is_what_restore_auto_would_apply():
    names = ["jpeg-q10", "jpeg-q20", "jpeg-q40", "jpeg-any"]
    assert auto_choice(load_profile("twitter"), names) == "jpeg-q40"
    assert auto_choice(load_profile("webp"), names) == "passthrough"  # no JPEG tables: the default model


def test_nearest_standard_offers_only_bases_the_recipe_can_copy():
    """The platform recipe copies four 9-7-1-5 layers: a deepened jpeg-qN (9-7-3-1-5) of the same
    quality must not be picked as its base, while every quality keeps a base it can copy."""
    from arcnn.registry import bundled

    recipe = {"type": "convnet", "spec": "9-7-1-5", "residual": True}
    models, cards = standard_models(recipe), bundled()
    assert models and all(cards[name].architecture == recipe for name in models)
    assert set(models.values()) >= set(range(10, 100, 10))
    assert set(standard_models()) - set(models), "the deepened models are left out"
