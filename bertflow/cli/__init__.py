"""The ``bertflow`` command: one typer app; plugins add commands via ``bertflow_cli``."""

from bertflow.cli._app import app, fail, run_or_fail
from bertflow.cli import info as _info  # noqa: F401  (registers the command)
from bertflow.cli import plugins as _plugins  # noqa: F401
from bertflow.cli import sweep as _sweep  # noqa: F401
from bertflow.cli import init as _init  # noqa: F401
from bertflow.cli import new_plugin as _new_plugin  # noqa: F401
from bertflow.cli import evaluate as _evaluate  # noqa: F401
from bertflow.cli import annotate as _annotate  # noqa: F401
from bertflow.cli import package as _package  # noqa: F401
from bertflow.cli import check as _check  # noqa: F401
from bertflow.cli import convert as _convert  # noqa: F401
from bertflow.cli import train as _train  # noqa: F401
from bertflow.cli import export as _export  # noqa: F401
from bertflow.cli import distill as _distill  # noqa: F401
from bertflow.cli import distill_encoder as _distill_encoder  # noqa: F401
from bertflow.cli import compress as _compress  # noqa: F401
from bertflow.cli import serve as _serve  # noqa: F401


def task_alias(argv):
    """``bertflow TASK convert ...`` is ``bertflow convert TASK ...`` (the form older projects use)."""
    if len(argv) >= 2 and argv[1] == "convert" and not argv[0].startswith("-") and argv[0] != "convert":
        return ["convert", argv[0], *argv[2:]]
    return list(argv)


# the commands the core defines, taken before any plugin adds its own through ``bertflow_cli``
_CORE_COMMANDS = frozenset({cmd.name for cmd in app.registered_commands}
                           | {group.name for group in app.registered_groups})


_plugin_commands_added = False  # whether the plugins' commands are on the app


def core_commands() -> frozenset:
    """Names of the commands the core defines (plugins add theirs through ``bertflow_cli``)."""
    return _CORE_COMMANDS


DEBUG_ENV = "BERTFLOW_DEBUG"


def main() -> None:
    """The ``bertflow`` console script. Plugins are loaded (for their ``bertflow_cli``
    commands) only when the command is not one of the core's, so ``--help``,
    ``--version`` and every core command start without importing them.

    The one error boundary of the command: whatever escapes a command (a
    spaCy, thinc, srsly, confection or corpus error) is printed as one line
    and exits 1; ``BERTFLOW_DEBUG=1`` shows the traceback instead."""
    import os
    import sys

    import typer

    from bertflow.errors import BertflowError, one_line

    args = task_alias(sys.argv[1:])
    command = next((a for a in args if not a.startswith("-")), None)
    try:
        global _plugin_commands_added
        if command is not None and command not in core_commands() and not _plugin_commands_added:
            from bertflow.hooks.manager import get_plugin_manager

            get_plugin_manager().hook.bertflow_cli(app=app)
            _plugin_commands_added = True  # once a process: a second call would register them twice
        app(args=args, prog_name="bertflow")
    except Exception as err:  # noqa: BLE001  (the boundary: one line for anything a command did not catch)
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        text = str(err) if isinstance(err, BertflowError) else one_line(err)
        typer.secho(f"✘ bertflow {command or ''}: {text} ({DEBUG_ENV}=1 shows the traceback)".replace("  ", " "),
                    fg=typer.colors.RED, err=True)
        sys.exit(1)


__all__ = ["app", "fail", "run_or_fail", "main", "task_alias", "core_commands"]
