from typing import Any, Callable

import typer

from ..errors import BertflowError

app = typer.Typer(
    name="bertflow",
    help="bertflow: one BERT encoder, many NLP task heads, as spaCy components.",
    no_args_is_help=True,
    add_completion=False,
)


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
