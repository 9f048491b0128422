"""bertflow hook implementations for the NER plugin (public hooks only)."""
from pathlib import Path
from typing import Optional

import typer

from bertflow import hookimpl
from bertflow.specs import TaskSpec

from .component import DEFAULT_MODEL_CONFIG
from .convert import convert


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="ner",
        factory="bertflow_ner",
        default_config=DEFAULT_MODEL_CONFIG,
        scorer="bertflow.ner_scorer.v1",
        converters={"conll": convert, "jsonl": convert},
        metrics=("ents_f", "ents_p", "ents_r"),
        description="named entities: doc.ents from BIO/BILUO tags with constrained decoding",
    )]


@hookimpl
def bertflow_cli(app):
    ner = typer.Typer(help="Named entity recognition (bertflow-ner).", no_args_is_help=True)

    @ner.command("convert")
    def convert_cli(
        input_path: Path = typer.Argument(..., help="CoNLL (token ... TAG) or JSONL (text + char-offset entities)."),
        output_path: Path = typer.Argument(..., help="Output .spacy file."),
        file_format: Optional[str] = typer.Option(None, "--format", help="conll or jsonl (default: file suffix)."),
        lang: str = typer.Option("en", "--lang", help="spaCy language code."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed rows instead of failing."),
        alignment_mode: str = typer.Option("strict", "--alignment-mode",
                                           help="JSONL spans off token boundaries: strict, contract or expand."),
    ):
        """Convert NER data to a .spacy DocBin with doc.ents."""
        from bertflow.cli import run_or_fail

        report = run_or_fail(convert, input_path, output_path, file_format=file_format, lang=lang, skip_bad=skip_bad,
                             alignment_mode=alignment_mode)
        typer.echo(report.summary())

    app.add_typer(ner, name="ner")
