"""Transfer: configs copy and freeze the declared layers; experiments run arms x seeds and report."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from arcnn.architectures import build
from arcnn.cards import ModelCard
from arcnn.registry import save_model
from synthetic_data import write_ground_truth
from training.train import TrainConfig, train
from training.transfer import conv_layers
from training.studies.transfer_experiments import (
    Experiment, markdown_curves, markdown_levels, markdown_table, plot, run_experiment, samples_to_reach,
    summarise,
)

CONFIGS = Path(__file__).parents[1] / "training" / "configs"
BUNDLED = Path(__file__).parents[1] / "arcnn" / "weights"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_ground_truth(tmp_path_factory.mktemp("data"), {"train": 3, "val": 2}, size=80, seed=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 'trained' base: a shallow 9-7-1-5 with distinctive weights, saved like a bundled model."""
    torch.manual_seed(5)
    model = build({"type": "convnet", "spec": "9-7-1-5", "residual": True})
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_model(model, path, ModelCard(name="base"))
    return model, path


def _cfg(**kw) -> TrainConfig:
    fields = dict(name="t", architecture={"type": "convnet", "spec": "9-7-3-1-5", "residual": True},
                  degradation={"type": "jpeg", "quality": 10}, train_dirs=["train"], val_dirs=["val"],
                  steps=4, batch=4, patch=16, lr=1e-2, warmup=1, val_every=4, val_images=1, checkpoint_every=4)
    fields.update(kw)
    return TrainConfig(**fields)


@pytest.mark.parametrize("freeze", [True, False])
def test_transfer_config_copies_then_freezes_or_fine_tunes(data_root, base, tmp_path, freeze):
    torch.set_num_threads(1)
    model, path = base
    cfg = _cfg(transfer={"base": str(path), "layers": [0, 1], "freeze": freeze})
    train(cfg, data_root, tmp_path / "run", export=tmp_path / "m.safetensors", progress=False)
    from arcnn.registry import load_model

    trained, card = load_model(tmp_path / "m.safetensors")
    assert card.transfer["layers"] == [0, 1] and card.config["spec"] == "9-7-3-1-5"
    src, dst = conv_layers(model), conv_layers(trained)
    for i in (0, 1):
        # frozen: bit-identical to the base after training; fine-tuned: started there, then moved
        assert torch.equal(dst[i].weight, src[i].weight) is freeze
        assert torch.allclose(dst[i].weight, src[i].weight, atol=0.05)


def test_transfer_rejects_layers_that_do_not_fit(data_root, base, tmp_path):
    _, path = base
    cfg = _cfg(transfer={"base": str(path), "layers": [2]})  # 1x1x32x16 into 3x3x32x16
    with pytest.raises(ValueError, match="layer 2"):
        train(cfg, data_root, tmp_path / "run", progress=False)


def test_shipped_experiments_declare_valid_runs():
    for path in sorted((CONFIGS / "transfer").glob("*.toml")):
        exp = Experiment.load(path)
        assert exp.seeds and len(exp.arms) >= 3
        for arm in exp.arms:
            cfg = exp.config(arm, exp.seeds[0])
            assert cfg.steps * cfg.batch <= 16_000 and cfg.val_images <= 10
            if cfg.transfer:
                # a bundled standard model (by name) or a base trained for the experiments
                base = cfg.transfer["base"]
                assert base.startswith("runs/transfer/bases/") or (BUNDLED / f"{base}.json").exists(), base
                assert not cfg.transfer.get("freeze") and len(exp.seeds_of(arm)) >= 2
    platform = Experiment.load(CONFIGS / "transfer" / "standard-to-platform.toml")
    cfg = platform.config(platform.arms[0], 1)
    assert cfg.colour and cfg.degradation["type"] == "chain"
    with open(CONFIGS / "platform.toml", "rb") as f:
        assert tomllib.load(f)["transfer"]["base"] == "nearest"


def test_samples_to_reach_interpolates():
    log = [{"samples": 100, "psnr": 27.0}, {"samples": 200, "psnr": 28.0}, {"samples": 300, "psnr": 29.0}]
    assert samples_to_reach(log, 26.0) == 100
    assert samples_to_reach(log, 28.5) == 250
    assert samples_to_reach(log, 30.0) is None


def test_experiment_runs_arms_and_seeds_then_reports(data_root, base, tmp_path):
    torch.set_num_threads(1)
    _, path = base
    spec = f"""
title = "tiny"
seeds = [1, 2]
[common]
architecture = {{ type = "convnet", spec = "9-7-1-5", residual = true }}
degradation = {{ type = "jpeg", quality = 10 }}
train_dirs = ["train"]
val_dirs = ["val"]
steps = 4
batch = 4
patch = 16
warmup = 1
val_every = 2
val_images = 1
[[arm]]
name = "transfer"
label = "layer 1 of base"
transfer = {{ base = "{path}", layers = [0] }}
[[arm]]
name = "scratch"
init = "gaussian"
"""
    (tmp_path / "tiny.toml").write_text(spec)
    exp = Experiment.load(tmp_path / "tiny.toml")
    runs = tmp_path / "runs"
    run_experiment(exp, data_root, runs)
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == [
        "scratch-s1", "scratch-s2", "transfer-s1", "transfer-s2"]
    mtime = (runs / "tiny" / "scratch-s1" / "log.csv").stat().st_mtime
    run_experiment(exp, data_root, runs)  # finished runs are skipped, not retrained
    assert (runs / "tiny" / "scratch-s1" / "log.csv").stat().st_mtime == mtime
    summary = summarise(exp, runs)
    scratch = summary["arms"]["scratch"]
    assert summary["threshold"] == pytest.approx(np.mean(list(scratch["final"].values())))
    assert scratch["samples"] == {1: 16, 2: 16}
    table = markdown_table(summary)
    assert markdown_curves(summary).splitlines()[0] == "| arm | 8 | 16 |"
    assert "| layer 1 of base | 16 |" in table and "| scratch | 16 |" in table
    levels = markdown_levels(summary, [0.0, 99.0]).splitlines()
    assert levels[0] == "| arm | 0.00 dB | 99.00 dB |"
    assert levels[2] == "| layer 1 of base | 8, 8 | not reached, not reached |"
    plot(exp, summary, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_snapshot_exports_a_checkpoint_as_a_base(data_root, tmp_path):
    from arcnn.registry import load_model
    from training.studies.transfer_experiments import snapshot

    torch.set_num_threads(1)
    config = tmp_path / "c.toml"
    config.write_text('name = "c"\narchitecture = { type = "convnet", spec = "9-1-5", residual = true }\n'
                      'degradation = { type = "jpeg", quality = 20 }\ntrain_dirs = ["train"]\nval_dirs = ["val"]\n'
                      'steps = 4\nbatch = 4\npatch = 16\nwarmup = 1\nval_every = 2\nval_images = 1\n'
                      'checkpoint_every = 2\n')
    train(TrainConfig.load(config), data_root, tmp_path / "run", progress=False)
    card = snapshot(tmp_path / "run", config, tmp_path / "base.safetensors")
    assert card.steps == 4 and card.samples_seen == 16 and card.validation["psnr"] > 0
    model, _ = load_model(tmp_path / "base.safetensors")
    assert model.config()["spec"] == "9-1-5"
