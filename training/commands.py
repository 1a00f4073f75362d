"""The CLI command of training: ``arcnn train`` (reproduce any bundled model from its config, or
train a platform model).

Commands read the environment and pass the values down; the training modules themselves read
none. Showing a profile and evaluating models through it is a study
(``python -m training.studies.platforms``).
"""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_DATA = Path("../shared/data")


@click.command("train")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Training config (TOML), e.g. training/configs/jpeg-q10.toml. With "
                                 "--platform: the recipe to use (default training/configs/platform.toml).")
@click.option("--platform", "profile", default=None,
              help="Platform profile (a shipped name such as twitter, or a profile file): train "
                   "platform-<name> on ground truth put through the profile, by transfer from a standard model.")
@click.option("--base", default=None,
              help="With --platform: model to transfer from (bundled name, .safetensors path, or 'nearest').")
@click.option("--train-dir", "train_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --platform: your own ground-truth folder(s) of originals (repeatable; "
                   "default: the recipe's BSDS500 folders under --data).")
@click.option("--val-dir", "val_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --platform: validation ground-truth folder(s) (default: BSDS500/val under --data).")
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DATA, show_default=True, help="Folder holding the ground-truth sets.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoints, log.csv and curve.png (default runs/<name>); re-running resumes.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the final .safetensors + card (default: the bundled weights).")
@click.option("--steps", type=int, default=None, help="Override the config's step count.")
@click.option("--until", type=int, default=None,
              help="Stop at this step (checkpointed, not exported); the schedule still spans --steps.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
def train_command(config_path: Path | None, profile: str | None, base: str | None,
                  train_dirs: tuple[Path, ...], val_dirs: tuple[Path, ...], data_root: Path,
                  run_dir: Path | None, export: Path | None, steps: int | None, until: int | None,
                  device: str) -> None:
    """Train a model from a config (resumable), then export it with its model card."""
    from arcnn.errors import ArcnnError
    from arcnn.restoration import resolve_device
    from training.platforms import PLATFORM_RECIPE, ProfileError, load_profile, platform_config, record_profile
    from training.train import TrainConfig, default_export, train

    if profile is None:
        if config_path is None:
            raise click.UsageError("give --config FILE, or --platform PROFILE")
        if base or train_dirs or val_dirs:
            raise click.UsageError("--base, --train-dir and --val-dir go with --platform")
        cfg = TrainConfig.load(config_path, steps=steps)
    else:
        try:
            prof = load_profile(profile)
            cfg = platform_config(prof, data_root, config_path or PLATFORM_RECIPE, base,
                                  [str(d.resolve()) for d in train_dirs],
                                  [str(d.resolve()) for d in val_dirs], steps)
        except (ProfileError, ArcnnError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc
    run_dir = run_dir or Path("runs") / cfg.name
    export = export or default_export(cfg.name)
    try:
        resolve_device(device)  # `--device cuda` without a GPU: one line, before any data loads
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        card = train(cfg, data_root, run_dir, export=export, device=device, until=until)
    except (ArcnnError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if profile is not None and card.steps == cfg.steps:
        record_profile(export.with_suffix(".json"), prof)
    v = card.validation
    where = f"-> {export}" if card.steps == cfg.steps else f"stopped early; checkpoint in {run_dir}"
    click.echo(f"{cfg.name}: {card.steps} steps, validation PSNR {v['psnr']:.3f} dB "
               f"(input {v['input_psnr']:.3f}) {where}")

