"""The training loop: config in, checkpoints / CSV log / convergence plot / bundled model out.

A run lives in its own folder (``runs/<name>`` by default) holding ``checkpoint.pt`` (model,
optimiser, sampler RNG, step; written atomically every ``checkpoint_every`` steps and loaded with
``weights_only=True``), ``log.csv`` and ``curve.png``. Starting the same command again resumes
from the checkpoint, so a killed run loses at most one checkpoint interval.
"""

from __future__ import annotations

import csv
import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from arcnn.architectures import build
from arcnn.cards import ModelCard
from arcnn.evaluation import evaluate_chroma, evaluate_planes
from arcnn.registry import BUNDLED_DIR, save_model
from arcnn.restoration import resolve_device
from arcnn.images import list_images
from training.colour_data import ColourPairs, ColourPatchSampler, build_colour_pairs, mix_from_config
from training.data import PatchSampler, PairSet, build_pairs
from training.degradations import from_config
from training.transfer import apply_transfer, initialise

LOG_FIELDS = ["step", "samples", "loss", "val_psnr", "val_ssim", "val_psnr_b", "input_psnr", "elapsed_s"]


@dataclass
class TrainConfig:
    """Everything a run needs; written to TOML files in ``training/configs``."""

    name: str
    architecture: dict
    degradation: dict
    # "luma": a Y network on (clean Y, degraded Y) pairs, as the paper. "chroma": the colour
    # network (arcnn.architectures.ChromaNet) on full-chroma colour pairs (training/colour_data.py).
    task: str = "luma"
    train_dirs: list[str] = field(default_factory=lambda: ["BSDS500/train", "BSDS500/test"])
    val_dirs: list[str] = field(default_factory=lambda: ["BSDS500/val"])
    variants: int = 1
    colour: bool = False
    steps: int = 20000
    batch: int = 32
    patch: int = 46
    augment: str = "dihedral"
    optimizer: str = "adam"
    lr: float = 1e-3
    last_layer_lr: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 200
    init: str = "he"
    init_std: float = 1e-3
    val_every: int = 500
    val_images: int = 20
    checkpoint_every: int = 250
    seed: int = 0
    precision: str = "fp32"
    # Decay of an exponential moving average of the weights (e.g. 0.999: about the last 1000
    # steps). When set, validation and the exported model use the average, which smooths out the
    # step-to-step noise of a finishing stage run at a small, constant learning rate.
    ema: float | None = None
    transfer: dict | None = None
    description: str = ""

    @classmethod
    def load(cls, path: Path, **overrides: object) -> "TrainConfig":
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or the paper's SGD with a 10x smaller learning rate on the reconstruction layer."""
    params = [p for p in model.parameters() if p.requires_grad]
    last = list(model.parameters())[-2:]
    if cfg.last_layer_lr is not None:
        last_ids = {id(p) for p in last}
        groups = [
            {"params": [p for p in params if id(p) not in last_ids], "lr": cfg.lr},
            {"params": [p for p in params if id(p) in last_ids], "lr": cfg.last_layer_lr},
        ]
    else:
        groups = [{"params": params, "lr": cfg.lr}]
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """``precision = "bf16"``: convolutions run in bfloat16 (weights, optimiser, loss and the
    residual add stay float32). On CPUs with AMX that makes a step several times faster
    (docs/training.md has the figures); "fp32" (the default) disables it."""
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {cfg.precision!r}: use 'fp32' or 'bf16'")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_plot(log_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader(open(log_path)) if r["val_psnr"]]
    if not rows:
        return
    samples = [int(r["samples"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(samples, [float(r["val_psnr"]) for r in rows], label="restored")
    ax.axhline(float(rows[0]["input_psnr"]), color="gray", linestyle="--", label="JPEG input")
    ax.set_xlabel("training samples (sub-images)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def load_data(cfg: TrainConfig, data_root: Path, radius: int
              ) -> tuple[PatchSampler | ColourPatchSampler, PairSet | ColourPairs]:
    if cfg.task == "chroma":
        train = build_colour_pairs(list_images([data_root / d for d in cfg.train_dirs]),
                                   mix_from_config(cfg.degradation, cfg.seed), cfg.variants)
        val_paths = list_images([data_root / d for d in cfg.val_dirs])[: cfg.val_images]
        val = build_colour_pairs(val_paths, mix_from_config(cfg.degradation, 12345), 1)
        return ColourPatchSampler(train, cfg.patch, radius, cfg.seed, cfg.augment), val
    if cfg.task != "luma":
        raise ValueError(f"unknown task {cfg.task!r}: use 'luma' or 'chroma'")
    degradation = from_config(cfg.degradation)
    train = build_pairs(list_images([data_root / d for d in cfg.train_dirs]), degradation,
                        cfg.variants, cfg.colour)
    val_paths = list_images([data_root / d for d in cfg.val_dirs])[: cfg.val_images]
    val = build_pairs(val_paths, from_config(cfg.degradation), 1, cfg.colour)
    return PatchSampler(train, cfg.patch, radius, cfg.seed, cfg.augment), val


@dataclass
class _Run:
    """What one training run holds: the model, what steps it and what it is validated on."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    averaged: AveragedModel | None
    """The weights' moving average (``ema``), which is what is validated and exported."""
    sampler: PatchSampler | ColourPatchSampler
    val: PairSet | ColourPairs
    device: torch.device

    @property
    def shipped(self) -> nn.Module:
        return self.averaged.module if self.averaged is not None else self.model


# oneDNN and cuDNN convolutions are fastest on channels-last activations: bf16 needs it, and
# fp32 steps are faster with it too
_LAYOUT = torch.channels_last


def _start(cfg: TrainConfig, data_root: Path, device: torch.device) -> _Run:
    """The seeded, initialised (or transferred) model on ``device``, its optimiser and data."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build(cfg.architecture)
    initialise(model, cfg.init, cfg.init_std)
    if cfg.transfer:
        apply_transfer(model, cfg.transfer)
    model.to(device, memory_format=_LAYOUT)
    optimizer = make_optimizer(model, cfg)
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
                if cfg.ema is not None else None)
    sampler, val = load_data(cfg, data_root, model.radius)
    return _Run(model, optimizer, averaged, sampler, val, device)


def _resume(run: _Run, checkpoint: Path, log_path: Path) -> tuple[int, float]:
    """(step, seconds trained) from the run's checkpoint, or (0, 0) with a fresh log."""
    if not checkpoint.exists():
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(LOG_FIELDS)
        return 0, 0.0
    state = torch.load(checkpoint, map_location=run.device, weights_only=True)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.sampler.set_state(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    if run.averaged is not None:
        run.averaged.load_state_dict(state["ema"])
    return state["step"], state["elapsed"]


def _checkpoint(run: _Run, checkpoint: Path, step: int, elapsed: float) -> None:
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "sampler": run.sampler.state(), "torch_rng": torch.get_rng_state(),
             "step": step, "elapsed": elapsed}
    if run.averaged is not None:
        state["ema"] = run.averaged.state_dict()
    _atomic_save(state, checkpoint)


def _validate(cfg: TrainConfig, run: _Run) -> dict:
    """Metrics of the shipped weights on the validation pairs (input and restored)."""
    shipped = run.shipped
    shipped.eval()
    if cfg.task == "chroma":
        inputs = [run.val.network_input(i) for i in range(len(run.val))]
        result = evaluate_chroma(shipped, run.val.clean, inputs, device=str(run.device))
    else:
        result = evaluate_planes(shipped, run.val.clean, run.val.degraded, device=str(run.device))
    run.model.train()
    return result


def _step(cfg: TrainConfig, run: _Run, step: int, amp: torch.autocast) -> float:
    """One optimiser step at ``step``'s learning rate; returns the batch's loss."""
    factor = lr_factor(step, cfg)
    for g in run.optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    x, y = run.sampler.sample(cfg.batch)
    x, y = x.to(run.device, memory_format=_LAYOUT), y.to(run.device)
    with amp:
        out = run.model(x)
    loss = nn.functional.mse_loss(out.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.averaged is not None:
        run.averaged.update_parameters(run.model)
    return loss.item()


def _log_row(step: int, cfg: TrainConfig, loss_ema: float, metrics: dict, seconds: float) -> list:
    restored = metrics["restored"]
    return [step, step * cfg.batch, f"{loss_ema:.6g}", f"{restored['psnr']:.4f}",
            f"{restored.get('ssim', float('nan')):.4f}", f"{restored.get('psnr_b', float('nan')):.4f}",
            f"{metrics['input']['psnr']:.4f}", f"{seconds:.0f}"]


def _card(cfg: TrainConfig, step: int, log_path: Path, started: float, device: torch.device) -> ModelCard:
    """The model card of the run as it stands: recipe, cost, and the last validation logged."""
    rows = list(csv.DictReader(open(log_path)))
    final = rows[-1] if rows else {}
    return ModelCard(
        name=cfg.name,
        description=cfg.description,
        trained=True,
        task=cfg.task,
        architecture=cfg.architecture,
        degradation=cfg.degradation,
        training_data={"train": cfg.train_dirs, "val": cfg.val_dirs[:1], "val_images": cfg.val_images,
                       "colour": cfg.colour, "variants": cfg.variants},
        recipe={k: getattr(cfg, k) for k in ("optimizer", "lr", "last_layer_lr", "schedule", "batch",
                                             "patch", "augment", "init", "seed", "precision", "ema")},
        transfer=cfg.transfer,
        steps=step,
        samples_seen=step * cfg.batch,
        wall_time_s=round(float(final.get("elapsed_s", time.time() - started))),
        device=str(device),
        metrics={"validation": {"psnr": float(final.get("val_psnr", "nan")),
                                "ssim": float(final.get("val_ssim", "nan")),
                                "psnr_b": float(final.get("val_psnr_b", "nan")),
                                "input_psnr": float(final.get("input_psnr", "nan"))}},
    )


def train(cfg: TrainConfig, data_root: Path, run_dir: Path, export: Path | None = None,
          device: str = "auto", progress: bool = True, until: int | None = None) -> ModelCard:
    """Train (or resume) the run in ``run_dir``; export the final model to ``export`` if given.

    ``until`` stops early at that step (checkpointed, not exported), for training in slices.
    """
    dev = resolve_device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    amp = autocast(cfg, dev)  # checks the precision before any data is loaded
    run = _start(cfg, data_root, dev)
    checkpoint, log_path = run_dir / "checkpoint.pt", run_dir / "log.csv"
    step, elapsed = _resume(run, checkpoint, log_path)

    loss_ema = None
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=cfg.name, dynamic_ncols=True)
    started = time.time() - elapsed
    run.model.train()
    last = min(cfg.steps, until) if until is not None else cfg.steps
    while step < last:
        loss = _step(cfg, run, step, amp)
        step += 1
        loss_ema = loss if loss_ema is None else 0.98 * loss_ema + 0.02 * loss
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.steps:
            metrics = _validate(cfg, run)
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow(_log_row(step, cfg, loss_ema, metrics, time.time() - started))
            _write_plot(log_path, run_dir / "curve.png", cfg.name)
            bar.set_postfix(loss=f"{loss_ema:.2e}", val_psnr=f"{metrics['restored']['psnr']:.3f}")
        elif step % 50 == 0:
            bar.set_postfix(loss=f"{loss_ema:.2e}")
        if step % cfg.checkpoint_every == 0 or step == last:
            _checkpoint(run, checkpoint, step, time.time() - started)
    bar.close()

    card = _card(cfg, step, log_path, started, dev)
    if export is not None and step == cfg.steps:
        card = save_model(run.shipped.cpu(), export, card)
    return card


def default_export(name: str) -> Path:
    return BUNDLED_DIR / f"{name}.safetensors"
