"""The ``arcnn`` command line: one group, with commands defined next to what they drive.

Library commands (restore, eval, models) live in :mod:`arcnn.commands`; training in
:mod:`training.commands`; the bucket-scale job commands (enqueue, status, worker, run) in
:mod:`worker.commands`. This module only assembles them.
"""

from __future__ import annotations

import click

from arcnn import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arcnn")
def main() -> None:
    """Remove JPEG compression artifacts with AR-CNN."""


def _register() -> None:
    from arcnn import commands as library
    from training import commands as training
    from worker import commands as jobs

    for module in (library, training, jobs):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
