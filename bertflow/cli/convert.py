"""``bertflow convert TASK INPUT OUTPUT [--format F] [task options]``."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def convert_cli(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task name, e.g. textcat, ner, qa, similarity ('bertflow plugins' lists them)."),
    input_path: Path = typer.Argument(..., help="Raw data file."),
    output_path: Path = typer.Argument(..., help="Output .spacy file."),
    file_format: Optional[str] = typer.Option(None, "--format", help="Input format (default: the file suffix)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUTPUT that is not a .spacy file (a "
                               ".spacy file from an earlier conversion is replaced without it)."),
):
    """Convert raw data for TASK to a .spacy DocBin with the task plugin's converter.

    Task options follow as --name value, e.g. `bertflow convert textcat sst2.tsv train.spacy
    --label-map 0=NEGATIVE,1=POSITIVE`, `--skip-bad`, `--lang de`; an unknown option lists the
    task's options. More conversions can follow in the same process, each after `--and`:
    `... --and textcat dev.tsv dev.spacy --label-map 0=NEGATIVE,1=POSITIVE`.
    `bertflow TASK convert ...` is the same command.
    """
    from bertflow.data.convert import convert_args
    from bertflow.errors import BertflowError, Errors

    jobs, current = [], [task, str(input_path), str(output_path)]
    for word in ctx.args:
        if word == "--and":
            jobs.append(current)
            current = []
        else:
            current.append(word)
    jobs.append(current)

    def check_jobs():
        for job in jobs[1:]:
            if len(job) < 3 or any(word.startswith("--") for word in job[:3]):
                raise BertflowError(Errors.E136.format(got=' '.join(job) or 'nothing'))

    run_or_fail(check_jobs)  # every job well-formed before the first one runs

    for job in jobs:
        fmt = file_format if job is jobs[0] else None  # a later job gives its own --format
        typer.echo(run_or_fail(convert_args, job[0], Path(job[1]), Path(job[2]), job[3:], fmt, force).summary())
