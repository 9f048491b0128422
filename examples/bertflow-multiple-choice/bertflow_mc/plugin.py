"""bertflow hooks of the multiple-choice plugin (public API only)."""
from pathlib import Path

import typer

from bertflow.api import TaskSpec, hookimpl, run_or_fail

from .convert import convert


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="multiple_choice",
        factory="bertflow_multiple_choice",
        scorer="bertflow_mc.scorer.v1",
        converters={"jsonl": convert},
        metrics=("mc_acc",),
        config_overrides={"training.batcher": {"@batchers": "bertflow.batch_by_group.v1", "size": 8,
                                                "group_attr": "mc_question"}},
        description="multiple choice (SWAG-style): each (context, candidate) pair scored from [CLS], softmax per question",
    )]


@hookimpl
def bertflow_cli(app):
    mc = typer.Typer(help="Multiple choice (bertflow-multiple-choice, example plugin).", no_args_is_help=True)

    @mc.command("convert")
    def convert_cli(
        input_path: Path = typer.Argument(..., help="JSONL: {context, candidates, label}."),
        output_path: Path = typer.Argument(..., help="Output .spacy file."),
        lang: str = typer.Option("en", "--lang"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed rows instead of failing."),
    ):
        """Convert multiple-choice questions to a .spacy DocBin (one doc per candidate)."""
        typer.echo(run_or_fail(convert, input_path, output_path, lang=lang, skip_bad=skip_bad).summary())

    app.add_typer(mc, name="multiple-choice")
