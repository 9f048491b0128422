"""bertflow hooks of the QA plugin (public hooks only)."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.api import TaskSpec, hookimpl, run_or_fail

from .ask import ask, ask_many
from .convert import convert


@hookimpl
def bertflow_tasks():
    return [
        TaskSpec(
            name="qa",
            factory="bertflow_qa",
            scorer="bertflow.qa_scorer.v1",
            converters={"json": convert},
            metrics=("qa_f1", "qa_exact"),
            description="extractive QA on (doc._.text_pair question, doc context): doc.spans['answers'], bertflow.ask",
        )
    ]


@hookimpl
def bertflow_functions():
    return {"ask": ask, "ask_many": ask_many}


@hookimpl
def bertflow_cli(app):
    qa = typer.Typer(help="Extractive question answering (bertflow-qa).", no_args_is_help=True)

    @qa.command("convert")
    def convert_cli(
        input_path: Path = typer.Argument(..., help="SQuAD v1.1 or v2.0 JSON."),
        output_path: Path = typer.Argument(..., help="Output .spacy file (one doc per question)."),
        lang: str = typer.Option("en", "--lang"),
        limit: Optional[int] = typer.Option(None, "--limit", help="Convert at most this many questions."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed questions instead of failing."),
    ):
        """Convert SQuAD JSON to a .spacy DocBin."""
        typer.echo(run_or_fail(convert, input_path, output_path, lang=lang, skip_bad=skip_bad, limit=limit).summary())

    app.add_typer(qa, name="qa")
