"""The `herald` command: one Typer app assembled from small command modules."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from herald.cli import (
    audit_cmds,
    clients,
    dlq_cmds,
    ops,
    pipeline_cmds,
    prefs_cmds,
    push_cmds,
    replay_cmds,
    stack,
    users,
)

app = typer.Typer(
    name="herald",
    help="Herald notification pipeline: local stack, topics, producer tools, pipeline and diagnostics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show Ray's own start-up messages and warnings.")
    ] = False,
) -> None:
    """Herald notification pipeline: local stack, topics, producer tools, pipeline and diagnostics."""
    if verbose:
        # Through the environment so every command's load_settings() and the processes it starts see it.
        os.environ["HERALD_RAY_LOG_LEVEL"] = "info"


app.add_typer(stack.app, name="stack")
app.add_typer(users.app, name="users")
app.add_typer(dlq_cmds.app, name="dlq")
app.add_typer(prefs_cmds.app, name="prefs")
app.add_typer(push_cmds.app, name="push")
ops.register(app)
clients.register(app)
pipeline_cmds.register(app)
replay_cmds.register(app)
audit_cmds.register(app)


def main() -> None:
    app()
