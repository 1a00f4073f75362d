"""Training: a few steps on tiny synthetic data lower the loss; runs resume from checkpoints."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arcnn.cards import ModelCard
from synthetic_data import write_ground_truth
from training.data import PairSet, PatchSampler
from training.degradations import JPEG, Chain, Resize, WebP, from_config
from training.train import TrainConfig, train
from training.transfer import apply_transfer, conv_layers, initialise


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_ground_truth(tmp_path_factory.mktemp("data"), {"train": 4, "val": 2}, size=96, seed=0)


def _cfg(**kw):
    base = dict(name="tiny", architecture={"type": "convnet", "spec": "9-1-5", "residual": True},
                degradation={"type": "jpeg", "quality": 10}, train_dirs=["train"], val_dirs=["val"],
                steps=40, batch=8, patch=16, lr=1e-3, warmup=5, val_every=20, val_images=2,
                checkpoint_every=10, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_model_is_exported(data_root, tmp_path):
    torch.set_num_threads(1)
    card = train(_cfg(), data_root, tmp_path / "run", export=tmp_path / "m.safetensors", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [20, 40]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    v = card.validation
    assert v["psnr"] > v["input_psnr"]  # even 40 steps of residual learning beat the JPEG input
    assert (tmp_path / "m.safetensors").exists() and (tmp_path / "run" / "curve.png").exists()


def test_bf16_training_learns_and_exports_float32_weights(data_root, tmp_path):
    """precision = "bf16" autocasts the convolutions only: the loss still falls, the exported
    weights are float32 and contiguous (safetensors), and the card records the precision."""
    from arcnn.registry import load_model

    torch.set_num_threads(1)
    card = train(_cfg(precision="bf16"), data_root, tmp_path / "run", export=tmp_path / "m.safetensors",
                 progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert card.recipe["precision"] == "bf16"
    assert card.validation["psnr"] > card.validation["input_psnr"]
    model, _ = load_model(tmp_path / "m.safetensors")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ValueError, match="unknown precision"):
        train(_cfg(precision="fp8"), data_root, tmp_path / "bad", progress=False)


def test_ema_validates_and_exports_the_averaged_weights(data_root, tmp_path):
    """ema = decay keeps a moving average of the weights beside the trained ones; the average is
    what is validated and exported, and the card records the decay."""
    from arcnn.registry import load_model

    torch.set_num_threads(1)
    card = train(_cfg(ema=0.9), data_root, tmp_path / "run", export=tmp_path / "m.safetensors",
                 progress=False)
    assert card.recipe["ema"] == 0.9
    assert card.validation["psnr"] > card.validation["input_psnr"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    average = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    exported = load_model(tmp_path / "m.safetensors")[0].state_dict()
    assert exported.keys() == average.keys() == state["model"].keys()
    assert all(torch.equal(exported[k], average[k]) for k in exported)
    assert not all(torch.equal(exported[k], state["model"][k]) for k in exported)
    assert int(state["ema"]["n_averaged"]) == 40


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_where_it_stopped(data_root, tmp_path, ema):
    torch.set_num_threads(1)
    train(_cfg(ema=ema), data_root, tmp_path / "a", progress=False, until=20)  # as if killed at step 20
    resumed = train(_cfg(steps=40, ema=ema), data_root, tmp_path / "a", progress=False)
    straight = train(_cfg(steps=40, ema=ema), data_root, tmp_path / "b", progress=False)
    assert resumed.steps == 40
    # Model, optimiser and sampler state all come back, so the resumed run ends where the
    # uninterrupted one does (the cosine schedule depends on the total, so both used steps=40).
    a = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    b = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [r["step"] for r in a] == ["20", "40"]
    assert float(a[-1]["val_psnr"]) == pytest.approx(float(b[-1]["val_psnr"]), abs=1e-3)
    assert resumed.metrics == straight.metrics


def test_degradations_compose():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    chain = Chain((Resize(box=(200, 100)), JPEG(30), WebP(50)))
    out = chain(img)
    assert out.size == (133, 100)
    assert from_config(chain.describe()).describe() == chain.describe()


def _orientations(augment: str) -> set[str]:
    """Which way the stripes of a horizontally striped image run in sampled windows."""
    rows = np.repeat(np.arange(40, dtype=np.uint8)[:, None] * 5, 40, axis=1)
    sampler = PatchSampler(PairSet([rows], [rows]), patch=8, radius=4, seed=0, augment=augment)
    x, _ = sampler.sample(64)
    seen = set()
    for window in x[:, 0].numpy():
        seen.add("horizontal" if np.all(window == window[:, :1]) else
                 "vertical" if np.all(window == window[:1, :]) else "other")
    return seen


def test_flip_augmentation_never_transposes_jpeg_blocks():
    assert _orientations("flips") == {"horizontal"}
    assert _orientations("dihedral") == {"horizontal", "vertical"}
    with pytest.raises(ValueError, match="augment"):
        PatchSampler(PairSet([np.zeros((40, 40), np.uint8)], [np.zeros((40, 40), np.uint8)]),
                     patch=8, radius=4, seed=0, augment="spin")


def test_transfer_copies_and_freezes(tmp_path):
    from arcnn.architectures import build
    from arcnn.registry import save_model

    base = build({"type": "convnet", "spec": "9-7-1-5"})
    save_model(base, tmp_path / "base.safetensors", ModelCard(name="base"))
    target = build({"type": "convnet", "spec": "9-7-3-1-5"})
    apply_transfer(target, {"base": str(tmp_path / "base.safetensors"), "layers": [0, 1], "freeze": True})
    for i in (0, 1):
        assert torch.equal(conv_layers(target)[i].weight, conv_layers(base)[i].weight)
        assert not conv_layers(target)[i].weight.requires_grad
    assert conv_layers(target)[2].weight.requires_grad


def test_deepening_transfer_starts_as_the_base_function(tmp_path):
    """9-7-1-5 into 9-7-3-1-5 with ``into``/``identity``: same output before any training step."""
    from arcnn.architectures import build
    from arcnn.registry import save_model

    torch.manual_seed(0)
    base = build({"type": "convnet", "spec": "9-7-1-5", "residual": True})
    for layer in conv_layers(base):  # non-trivial biases too, so the identity layer must pass them
        torch.nn.init.normal_(layer.bias, std=0.1)
    save_model(base, tmp_path / "base.safetensors", ModelCard(name="base"))
    deep = build({"type": "convnet", "spec": "9-7-3-1-5", "residual": True})
    apply_transfer(deep, {"base": str(tmp_path / "base.safetensors"), "layers": [0, 1, 2, 3],
                          "into": [0, 1, 2, 4], "identity": [3]})
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        shallow_out, deep_out = base(x), deep(x)
    assert deep_out.shape[-1] == shallow_out.shape[-1] - 2  # one more pixel of radius per side
    assert torch.allclose(deep_out, shallow_out[..., 1:-1, 1:-1], atol=1e-6)
    with pytest.raises(ValueError, match="square channels"):
        apply_transfer(deep, {"base": str(tmp_path / "base.safetensors"), "layers": [], "identity": [2]})
    with pytest.raises(ValueError, match="one target layer per copied layer"):
        apply_transfer(deep, {"base": str(tmp_path / "base.safetensors"), "layers": [0, 1], "into": [0]})


def test_widening_transfer_starts_as_the_base_function_and_trains_the_new_channels(tmp_path):
    """64-32-16-16 into 64-48-32-32 with an explicit ``into``: same output at step 0, and one
    gradient step moves the zero weights that read the new channels (they are not dead)."""
    from arcnn.architectures import build
    from arcnn.registry import save_model

    torch.manual_seed(0)
    base = build({"type": "convnet", "spec": "9-7-3-1-5", "residual": True})
    for layer in conv_layers(base):
        torch.nn.init.normal_(layer.bias, std=0.1)
    save_model(base, tmp_path / "base.safetensors", ModelCard(name="base"))
    wide = build({"type": "convnet", "spec": "9-7-3-1-5", "widths": [64, 48, 32, 32], "residual": True})
    initialise(wide, "he")
    apply_transfer(wide, {"base": str(tmp_path / "base.safetensors"), "layers": [0, 1, 2, 3, 4],
                          "into": [0, 1, 2, 3, 4]})
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        assert torch.allclose(wide(x), base(x), atol=1e-6)
    last = conv_layers(wide)[-1]
    assert torch.count_nonzero(last.weight[:, 16:]) == 0
    torch.nn.functional.mse_loss(wide(x), torch.rand(2, 1, 20, 20)).backward()
    assert last.weight.grad[:, 16:].abs().sum() > 0
    with pytest.raises(ValueError, match="does not fit"):  # narrower than the base: refused
        narrow = build({"type": "convnet", "spec": "9-7-3-1-5", "widths": [64, 16, 16, 16], "residual": True})
        apply_transfer(narrow, {"base": str(tmp_path / "base.safetensors"), "layers": [1], "into": [1]})
    with pytest.raises(ValueError, match="does not fit"):  # wider, but no explicit ``into``
        apply_transfer(wide, {"base": str(tmp_path / "base.safetensors"), "layers": [1]})
    with pytest.raises(ValueError, match="freeze cannot be combined with growing"):
        apply_transfer(wide, {"base": str(tmp_path / "base.safetensors"), "layers": [1], "into": [1],
                              "freeze": True})  # the new channels would stay at their init


def test_every_bundled_model_is_reproducible_from_its_config():
    """Each standard bundled model has training/configs/<name>.toml describing the run that made
    it, down to the base it was fine-tuned from, so the lineage in the cards can be re-run."""
    from arcnn.registry import bundled
    from training.train import TrainConfig

    configs = Path(__file__).parent.parent / "training" / "configs"
    models = bundled()
    for name, card in models.items():
        if name.startswith("platform-"):  # made by `arcnn train --platform`, checked in test_platforms
            continue
        cfg = TrainConfig.load(configs / f"{name}.toml")
        assert cfg.name == name and cfg.architecture == card.architecture, name
        assert (cfg.steps, cfg.seed, cfg.augment) == (card.steps, card.recipe["seed"],
                                                      card.recipe.get("augment", "dihedral")), name
        base = (cfg.transfer or {}).get("base")
        assert base == (card.transfer or {}).get("base"), name
        assert base is None or base in models, f"{name}: base {base} is not bundled"


def test_chroma_task_trains_the_colour_network_and_validates_on_rgb(data_root, tmp_path):
    """task = "chroma": full-chroma colour pairs through the JPEG mix, the chroma network's loss
    falls, and validation is RGB PSNR of the decoded JPEG with the network's Cb/Cr."""
    torch.set_num_threads(1)
    cfg = _cfg(task="chroma", architecture={"type": "chroma", "kernels": [3, 3], "widths": [16], "residual": True},
               degradation={"type": "jpeg_mix", "low": 5, "high": 30, "p444": 0.0, "p_double": 0.5, "p_shift": 0.5},
               variants=2, patch=12, augment="flips", lr=2e-3)
    card = train(cfg, data_root, tmp_path / "run", export=tmp_path / "c.safetensors", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    v = card.validation
    assert np.isfinite(v["psnr"]) and np.isfinite(v["input_psnr"]) and card.task == "chroma"
    with pytest.raises(ValueError, match="flips"):
        train(_cfg(task="chroma", architecture=cfg.architecture, degradation=cfg.degradation, augment="dihedral"),
              data_root, tmp_path / "other", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_without_cuda_says_so_in_one_line():
    from click.testing import CliRunner

    from arcnn.cli import main

    result = CliRunner().invoke(main, ["train", "--config", str(Path(__file__).parents[1] / "training/configs/jpeg-q10.toml"),
                                        "--device", "cuda"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --device cuda asked for, but no CUDA device is available"


@pytest.mark.parametrize("colour", [False, True])
def test_a_grey_image_is_its_own_y_in_training_pairs_as_in_eval(colour):
    """Training pairs and arcnn eval take a grey image's plane as Y itself; through RGB it was
    squeezed into 16-235 (white became 235) while eval kept 0-255."""
    from arcnn.images import codec_roundtrip, studio_y
    from training.data import make_pair

    grey = Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 48), dtype=np.uint8))
    clean, degraded = make_pair(grey, JPEG(20), colour=colour)
    assert np.array_equal(clean, studio_y(grey)) and clean.max() > 235
    assert np.array_equal(degraded, np.asarray(codec_roundtrip(grey, "JPEG", quality=20)))
