"""CLI command ``arcnn train``."""

import click

COMMANDS: list[click.Command] = []
