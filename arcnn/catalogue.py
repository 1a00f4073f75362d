"""``arcnn models``: the bundled models, marked where ``--model auto`` uses them.

A user choosing a model wants to know which ones the default already applies. The bundle also
holds lineage stages: a model that a later one continued training on the same degradation (as
``jpeg-q10-stage2`` on the way to ``jpeg-q10``). They stay bundled as transfer bases and for the
results' convergence curves, but the later model supersedes them, so they are listed only with
``--all``.
"""

from __future__ import annotations

import json

import click

from arcnn.cards import ModelCard


def auto_models() -> set[str]:
    """The models ``--model auto`` can apply, in either tier: each one a tier's measured policy
    names, the tier's chroma network where its policy runs it at all, and the WebP models
    :data:`~arcnn.restoration.WEBP_POLICY` names."""
    from arcnn.model_names import CHROMA_MODELS, TIERS
    from arcnn.policy import shipped_policy
    from arcnn.restoration import PASSTHROUGH, WEBP_POLICY

    names: set[str] = set(WEBP_POLICY.values()) - {PASSTHROUGH}
    for tier in TIERS:
        policy = shipped_policy(tier)
        if policy is None:
            continue
        names |= {name for table in policy.luma.values() for name in table.values()} - {PASSTHROUGH}
        if any(any(table.values()) for table in policy.chroma.values()):
            names.add(CHROMA_MODELS[tier])
    return names


def earlier_stages(cards: dict[str, ModelCard]) -> set[str]:
    """Models that another of ``cards`` continued training on the same degradation."""
    stages = set()
    for card in cards.values():
        base = (card.transfer or {}).get("base")
        if base in cards and cards[base].degradation == card.degradation:
            stages.add(base)
    return stages


def describe(name: str, card: ModelCard, used_by_auto: bool) -> str:
    """Two lines: mark, name and description; how it was trained and how well it validated."""
    v = card.validation
    return (f"{'*' if used_by_auto else ' '} {name:18s} {card.description}\n"
            f"  {'':18s} steps {card.steps}, {card.wall_time_s} s on {card.device}, "
            f"val PSNR {_db(v.get('psnr'))} dB (input {_db(v.get('input_psnr'))})")


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@click.command("models")
@click.option("--all", "show_all", is_flag=True, help="Also list earlier training stages of other models.")
@click.option("--json", "as_json", is_flag=True, help="Print the listed models' cards as JSON.")
def models_command(show_all: bool, as_json: bool) -> None:
    """List the bundled trained models with their cards; * marks those --model auto uses."""
    from arcnn.registry import bundled

    cards = bundled()
    hidden = set() if show_all else earlier_stages(cards)
    listed = {name: card for name, card in cards.items() if name not in hidden}
    if as_json:
        click.echo(json.dumps({name: card.to_json() for name, card in listed.items()}, indent=2))
        return
    if not cards:
        click.echo("no trained weights are bundled yet (see training/configs and `arcnn train`)")
        return
    used = auto_models()
    for name, card in listed.items():
        click.echo(describe(name, card, name in used))
    footer = "* used by --model auto"
    if hidden:
        footer += f"; {len(hidden)} earlier training stages not shown (--all lists them)"
    click.echo(f"\n{footer}")
