"""`herald stack ...`: placeholder until the local stack lands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run the local stack: Kafka (KRaft), Redis and Ray.", no_args_is_help=True)
