from typing import Any, Callable

import typer

from bertflow.errors import BertflowError

app = typer.Typer(
    name="bertflow",
    help="bertflow: one BERT encoder, many NLP task heads, as spaCy components.",
    epilog="Installed plugins may add more commands: 'bertflow plugins' lists them.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from bertflow.about import __version__

        typer.echo(f"bertflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                       help="Print the bertflow version and exit.")) -> None:
    """bertflow: one BERT encoder, many NLP task heads, as spaCy components."""


def fail(message: str, code: int = 1) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    typer.secho(f"✘ {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def run_or_fail(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func``; a BertflowError (a user mistake) becomes a clear message
    and a non-zero exit instead of a traceback."""
    try:
        return func(*args, **kwargs)
    except BertflowError as err:
        fail(str(err))
