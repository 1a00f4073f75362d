"""CLI commands for the library: restore, eval, models."""

import click

COMMANDS: list[click.Command] = []
