"""Transfer experiments: several training arms x seeds under one recipe, and their curves.

An experiment file (``training/configs/transfer/*.toml``) holds a shared recipe (``[common]``, any
:class:`~training.train.TrainConfig` field, plus ``platform = "<profile>"`` to take the degradation
from a platform profile) and ``[[arm]]`` tables that differ in how the network starts: which
layers come from which base (``transfer``), how the rest is initialised (``init``). Every arm is
trained with every seed by the ordinary, resumable training loop into
``runs/transfer/<experiment>/<arm>-s<seed>``, so an interrupted experiment continues where it
stopped. ``report`` draws validation PSNR against samples seen (one line per run, the mean per
arm in bold) and tabulates final PSNR and the samples each arm needed to reach a fixed PSNR.

    python -m training.studies.transfer_experiments run training/configs/transfer/high-to-low.toml
    python -m training.studies.transfer_experiments report training/configs/transfer/high-to-low.toml \\
        --figure docs/figures/transfer-high-to-low.png
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from training.train import TrainConfig

RUNS_ROOT = Path("runs") / "transfer"
ARM_KEYS = {"name", "label", "seeds"}


@dataclass
class Experiment:
    name: str
    title: str
    seeds: list[int]
    common: dict
    arms: list[dict]
    threshold: float | str | None = None
    levels: tuple[float, ...] = ()

    @classmethod
    def load(cls, path: Path) -> "Experiment":
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        return cls(name=raw.get("name", Path(path).stem), title=raw["title"], seeds=list(raw["seeds"]),
                   common=dict(raw["common"]), arms=list(raw["arm"]), threshold=raw.get("threshold"),
                   levels=tuple(float(v) for v in raw.get("levels", ())))

    def config(self, arm: dict, seed: int) -> TrainConfig:
        """The full training config of one arm and seed."""
        fields = {**self.common, **{k: v for k, v in arm.items() if k not in ARM_KEYS}}
        profile = fields.pop("platform", None)
        if profile is not None:
            from training.platforms import load_profile

            fields.update(degradation=load_profile(profile).degradation().describe(), colour=True)
        return TrainConfig(name=f"{self.name}-{arm['name']}-s{seed}", seed=seed,
                           description=arm.get("label", arm["name"]), **fields)

    def seeds_of(self, arm: dict) -> list[int]:
        """An arm may run fewer seeds (``seeds = [1]``) where repeating it tells nothing new."""
        return list(arm.get("seeds", self.seeds))

    def run_dir(self, runs_root: Path, arm: dict, seed: int) -> Path:
        return runs_root / self.name / f"{arm['name']}-s{seed}"


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.csv"
    if not path.exists():
        return []
    return [{"samples": int(r["samples"]), "psnr": float(r["val_psnr"]), "input": float(r["input_psnr"])}
            for r in csv.DictReader(open(path)) if r["val_psnr"]]


def run_experiment(exp: Experiment, data_root: Path, runs_root: Path, arms: list[str] | None = None) -> None:
    """Train every (arm, seed) not yet finished; finished runs are skipped, partial ones resume."""
    from training.train import train

    for seed in exp.seeds:
        for arm in exp.arms:
            if (arms and arm["name"] not in arms) or seed not in exp.seeds_of(arm):
                continue
            cfg = exp.config(arm, seed)
            run_dir = exp.run_dir(runs_root, arm, seed)
            log = read_log(run_dir)
            if log and log[-1]["samples"] >= cfg.steps * cfg.batch:
                continue
            click.echo(f"{cfg.name}: {cfg.steps} steps x {cfg.batch} -> {run_dir}")
            card = train(cfg, data_root, run_dir, progress=False)
            click.echo(f"{cfg.name}: validation PSNR {card.validation['psnr']:.3f} dB")


def samples_to_reach(log: list[dict], threshold: float) -> int | None:
    """Samples seen at the first validation at or above ``threshold``, linearly interpolated."""
    previous = None
    for row in log:
        if row["psnr"] >= threshold:
            if previous is None or previous["psnr"] >= threshold:
                return row["samples"]
            t = (threshold - previous["psnr"]) / (row["psnr"] - previous["psnr"])
            return round(previous["samples"] + t * (row["samples"] - previous["samples"]))
        previous = row
    return None


def summarise(exp: Experiment, runs_root: Path) -> dict:
    """Per arm: the runs' logs, final PSNR per seed, and samples to reach the threshold.

    The threshold is the experiment's ``threshold`` in dB, or the mean final PSNR of the arm it
    names (default: the last arm, by convention the from-scratch baseline): "how many samples
    does each start need to get where training from scratch gets in the whole run".
    """
    logs = {arm["name"]: {s: read_log(exp.run_dir(runs_root, arm, s)) for s in exp.seeds_of(arm)}
            for arm in exp.arms}
    logs = {a: {s: log for s, log in runs.items() if log} for a, runs in logs.items()}
    if isinstance(exp.threshold, (int, float)):
        threshold = float(exp.threshold)
    else:
        reference = exp.threshold or exp.arms[-1]["name"]
        finals = [log[-1]["psnr"] for log in logs.get(reference, {}).values()]
        threshold = float(np.mean(finals)) if finals else float("nan")
    arms = {}
    for arm in exp.arms:
        runs = logs[arm["name"]]
        arms[arm["name"]] = {
            "label": arm.get("label", arm["name"]),
            "runs": runs,
            "final": {s: log[-1]["psnr"] for s, log in runs.items()},
            "samples": {s: log[-1]["samples"] for s, log in runs.items()},
            "reach": {s: samples_to_reach(log, threshold) for s, log in runs.items()},
        }
    inputs = [log[0]["input"] for a in arms.values() for log in a["runs"].values()]
    return {"threshold": threshold, "input_psnr": inputs[0] if inputs else float("nan"), "arms": arms}


def plot(exp: Experiment, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, arm) in enumerate(summary["arms"].items()):
        colour = f"C{i}"
        runs = list(arm["runs"].values())
        for log in runs:
            ax.plot([r["samples"] for r in log], [r["psnr"] for r in log], color=colour, alpha=0.35, lw=1)
        length = min(len(log) for log in runs) if runs else 0
        if length:
            mean = np.mean([[r["psnr"] for r in log[:length]] for log in runs], axis=0)
            ax.plot([r["samples"] for r in runs[0][:length]], mean, color=colour, lw=2.2, marker="o", ms=4,
                    label=f"{arm['label']} ({len(runs)} run{'s' * (len(runs) > 1)})")
    ax.axhline(summary["input_psnr"], color="gray", ls="--", lw=1, label="degraded input")
    if np.isfinite(summary["threshold"]):
        ax.axhline(summary["threshold"], color="black", ls=":", lw=1,
                   label=f"threshold {summary['threshold']:.2f} dB")
    ax.set_xlabel("training samples seen (sub-images)")
    ax.set_ylabel("validation PSNR on Y (dB), BSDS500 val")
    ax.set_title(exp.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(summary: dict) -> str:
    """Final PSNR (mean and per seed) and samples needed to reach the threshold, per arm."""
    lines = [f"Threshold: {summary['threshold']:.2f} dB; degraded input {summary['input_psnr']:.2f} dB.", "",
             "| arm | samples seen | final PSNR, mean (per seed) | samples to reach threshold (per seed) |",
             "|---|---|---|---|"]
    for arm in summary["arms"].values():
        finals = list(arm["final"].values())
        if not finals:
            continue
        seeds = ", ".join(f"{v:.3f}" for v in finals)
        reach = ", ".join("not reached" if v is None else f"{v:,}" for v in arm["reach"].values())
        seen = ", ".join(sorted({f"{v:,}" for v in arm["samples"].values()}))
        lines.append(f"| {arm['label']} | {seen} | {np.mean(finals):.3f} ({seeds}) | {reach} |")
    return "\n".join(lines)


def markdown_levels(summary: dict, levels: list[float]) -> str:
    """Samples each run needed to reach each fixed PSNR (the paper's measure), per seed.

    The single threshold of :func:`markdown_table` depends on one arm's final point; fixed levels
    in dB show the whole speed-up (and which runs never get there).
    """
    lines = ["| arm | " + " | ".join(f"{v:.2f} dB" for v in levels) + " |", "|---" * (len(levels) + 1) + "|"]
    for arm in summary["arms"].values():
        if not arm["runs"]:
            continue
        cells = []
        for level in levels:
            reach = [samples_to_reach(log, level) for log in arm["runs"].values()]
            cells.append(", ".join("not reached" if v is None else f"{v:,}" for v in reach))
        lines.append(f"| {arm['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_curves(summary: dict) -> str:
    """Validation PSNR of every arm at every sample count (mean over seeds): equal-samples reading.

    Runs cut short (or still running) stop early; this table compares arms only where both have
    data, which the "final PSNR" column cannot do.
    """
    counts = sorted({r["samples"] for a in summary["arms"].values() for log in a["runs"].values() for r in log})
    lines = ["| arm | " + " | ".join(f"{c:,}" for c in counts) + " |", "|---" * (len(counts) + 1) + "|"]
    for arm in summary["arms"].values():
        cells = []
        for c in counts:
            values = [r["psnr"] for log in arm["runs"].values() for r in log if r["samples"] == c]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        lines.append(f"| {arm['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.group()
def main() -> None:
    """Run transfer experiments and report their curves."""


@main.command("run")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path),
              default=Path("../shared/data"), show_default=True)
@click.option("--runs", "runs_root", type=click.Path(file_okay=False, path_type=Path), default=RUNS_ROOT,
              show_default=True)
@click.option("--arm", "arms", multiple=True, help="Only these arms (repeatable).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
def run_command(experiment: Path, data_root: Path, runs_root: Path, arms: tuple[str, ...], threads: int) -> None:
    """Train every arm and seed of EXPERIMENT (resumable)."""
    import torch

    torch.set_num_threads(threads)
    run_experiment(Experiment.load(experiment), data_root, runs_root, list(arms))


def snapshot(run_dir: Path, config: Path, out: Path) -> ModelCard:
    """Export the model in a run's latest checkpoint (with a card saying how far it had trained).

    A transfer base need not be a finished, bundled model: any checkpoint of a run is one, and
    the card records its step, samples seen and last validation PSNR so results can say so.
    """
    import torch

    from arcnn.architectures import build
    from arcnn.cards import ModelCard
    from arcnn.registry import save_model

    cfg = TrainConfig.load(config)
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    model = build(cfg.architecture)
    model.load_state_dict(state["model"])
    log = [r for r in read_log(run_dir) if r["samples"] <= state["step"] * cfg.batch]
    card = ModelCard(name=out.stem, description=f"snapshot of run {run_dir} ({cfg.name}) at step {state['step']}",
                     trained=True, architecture=cfg.architecture, degradation=cfg.degradation,
                     steps=state["step"], samples_seen=state["step"] * cfg.batch,
                     metrics={"validation": {"psnr": log[-1]["psnr"] if log else None,
                                             "input_psnr": log[-1]["input"] if log else None}})
    return save_model(model, out, card)


@main.command("snapshot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The run's training config (for the architecture).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the .safetensors + card.")
def snapshot_command(run_dir: Path, config: Path, out: Path) -> None:
    """Export RUN_DIR's latest checkpoint as a model usable as a transfer base."""
    card = snapshot(run_dir, config, out)
    click.echo(f"{out}: step {card.steps}, {card.samples_seen} samples, "
               f"last validation PSNR {card.validation['psnr']}")


@main.command("report")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--runs", "runs_root", type=click.Path(file_okay=False, path_type=Path), default=RUNS_ROOT,
              show_default=True)
@click.option("--figure", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the curves here (PNG).")
@click.option("--level", "levels", type=float, multiple=True,
              help="Also tabulate samples to reach this PSNR in dB (repeatable; default: the file's levels).")
def report_command(experiment: Path, runs_root: Path, figure: Path | None, levels: tuple[float, ...]) -> None:
    """Print the markdown table of EXPERIMENT's runs; optionally draw the curves."""
    exp = Experiment.load(experiment)
    summary = summarise(exp, runs_root)
    if figure is not None:
        plot(exp, summary, figure)
    click.echo(markdown_table(summary))
    levels = list(levels or exp.levels)
    if levels:
        click.echo("\nSamples seen to reach a fixed validation PSNR (per seed):\n")
        click.echo(markdown_levels(summary, levels))
    click.echo("\nValidation PSNR (dB) against samples seen:\n")
    click.echo(markdown_curves(summary))


if __name__ == "__main__":
    main()
