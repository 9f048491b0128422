import typer

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
