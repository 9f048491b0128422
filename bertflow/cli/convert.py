"""``bertflow convert TASK INPUT OUTPUT [--format F] [task options]``."""
from pathlib import Path
from typing import Optional

import typer

from ._app import app, run_or_fail


@app.command("convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def convert_cli(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name, e.g. textcat, ner, qa, similarity ('bertflow plugins' lists them)."),
    input_path: Path = typer.Argument(..., help="Raw data file."),
    output_path: Path = typer.Argument(..., help="Output .spacy file."),
    file_format: Optional[str] = typer.Option(None, "--format", help="Input format (default: the file suffix)."),
):
    """Convert raw data for TASK to a .spacy DocBin with the task plugin's converter.

    Task options follow as --name value, e.g. `bertflow convert textcat sst2.tsv train.spacy
    --label-map 0=NEGATIVE,1=POSITIVE`, `--skip-bad`, `--lang de`; an unknown option lists the
    task's options. `bertflow TASK convert ...` is the same command.
    """
    from ..convert import convert, parse_options, pick_converter
    from ..plugins import get_tasks

    def run():
        tasks = get_tasks()
        name = task if task in tasks else task.replace("-", "_")
        options = {}
        if name in tasks:
            func, _ = pick_converter(tasks[name], input_path, file_format)
            options = parse_options(func, ctx.args, name)
        return convert(name, input_path, output_path, file_format=file_format, **options)

    typer.echo(run_or_fail(run).summary())
