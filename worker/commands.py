"""CLI commands for jobs: enqueue, status, worker, run (filled in by the worker issue)."""

import click

COMMANDS: list[click.Command] = []
