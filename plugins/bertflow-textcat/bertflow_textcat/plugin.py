"""bertflow hook implementations for the textcat plugin (public hooks only)."""
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
        name="textcat",
        factory="bertflow_textcat",
        default_config=DEFAULT_MODEL_CONFIG,
        scorer="bertflow.textcat_scorer.v1",
        converters={"tsv": convert, "jsonl": convert},
        metrics=("cats_score", "cats_acc", "cats_macro_f", "cats_macro_auc"),
        description="text classification: doc.cats, exclusive (softmax) or multi-label (sigmoid)",
    )]


@hookimpl
def bertflow_cli(app):
    textcat = typer.Typer(help="Text classification (bertflow-textcat).", no_args_is_help=True)

    @textcat.command("convert")
    def convert_cli(
        input_path: Path = typer.Argument(..., help="TSV (text<TAB>label) or JSONL file."),
        output_path: Path = typer.Argument(..., help="Output .spacy file."),
        file_format: Optional[str] = typer.Option(None, "--format", help="tsv or jsonl (default: file suffix)."),
        lang: str = typer.Option("en", "--lang", help="spaCy language code for tokenization."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed rows instead of failing."),
        label_map: str = typer.Option("", "--label-map", help="Rename labels, e.g. 0=NEGATIVE,1=POSITIVE."),
    ):
        """Convert labelled texts to a .spacy DocBin with doc.cats."""
        from bertflow.cli import run_or_fail

        mapping = dict(item.split("=", 1) for item in label_map.split(",") if "=" in item)
        report = run_or_fail(convert, input_path, output_path, file_format=file_format, lang=lang,
                             skip_bad=skip_bad, label_map=mapping)
        typer.echo(report.summary())

    app.add_typer(textcat, name="textcat")
