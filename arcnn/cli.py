"""The ``arcnn`` command line: one group, whose commands the packages that define them register.

Each command is an entry point in the ``arcnn.commands`` group (pyproject.toml): the library's
own (restore, eval, models) and those of the packages built on it (train in ``training``; enqueue,
status, worker and run in ``worker``). The library therefore never imports those packages; they
plug in. An entry point names the extra its command needs (``"worker.commands:run [worker]"``):
without that extra installed the command still exists, and says in one line what to install.
Commands load on first use, so ``arcnn restore`` imports nothing of the worker.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata

import click

from arcnn import __version__

ENTRY_POINT_GROUP = "arcnn.commands"
DISTRIBUTION = "arcnn"


class PluginGroup(click.Group):
    """A group whose commands come from entry points, loaded when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(registered())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry_point = registered().get(name)
        if entry_point is None:
            return None
        absent = [extra for extra in entry_point.extras if missing_requirements(extra)]
        if absent:
            return needs_extra(name, absent[0])
        return entry_point.load()


@cache
def registered() -> dict[str, metadata.EntryPoint]:
    """Command name -> its entry point, for every installed command."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


@cache
def missing_requirements(extra: str) -> list[str]:
    """The distributions ``arcnn[extra]`` requires that are not installed.

    Read from the installed metadata rather than found by importing, so a command whose imports
    are deferred (``train`` plots with matplotlib only after its first validation) is caught
    before it starts, not hours in.
    """
    missing = []
    for requirement in metadata.requires(DISTRIBUTION) or []:
        spec, _, marker = requirement.partition(";")
        if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker) is None:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group()
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def needs_extra(name: str, extra: str) -> click.Command:
    """A stand-in for a command whose extra is not installed: any call says what to install."""
    hint = f"pip install 'arcnn[{extra}]'"

    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"arcnn {name} needs the {extra} extra: {hint}")

    return click.Command(name, callback=fail, help=f"Not installed: {hint}.", add_help_option=False,
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True})


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arcnn")
def main() -> None:
    """Remove JPEG compression artifacts with AR-CNN."""
