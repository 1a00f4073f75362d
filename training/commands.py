"""CLI command ``arcnn train``: reproduce any bundled model from its config."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_DATA = Path("../shared/data")


@click.command("train")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Training config (TOML), e.g. training/configs/jpeg-q10.toml.")
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DATA, show_default=True, help="Folder holding the ground-truth sets.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoints, log.csv and curve.png (default runs/<name>); re-running resumes.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the final .safetensors + card (default: the bundled weights).")
@click.option("--steps", type=int, default=None, help="Override the config's step count.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
def train_command(config_path: Path, data_root: Path, run_dir: Path | None, export: Path | None,
                  steps: int | None, device: str) -> None:
    """Train a model from a config (resumable), then export it with its model card."""
    from training.train import TrainConfig, default_export, train

    cfg = TrainConfig.load(config_path, steps=steps)
    run_dir = run_dir or Path("runs") / cfg.name
    export = export or default_export(cfg.name)
    card = train(cfg, data_root, run_dir, export=export, device=device)
    v = card["metrics"]["validation"]
    click.echo(f"{cfg.name}: {card['steps']} steps, validation PSNR {v['psnr']:.3f} dB "
               f"(input {v['input_psnr']:.3f}) -> {export}")


COMMANDS: list[click.Command] = [train_command]
