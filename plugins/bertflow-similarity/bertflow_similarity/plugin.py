"""bertflow hooks of the similarity plugin (public hooks only)."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.api import TaskSpec, hookimpl, run_or_fail

from .convert import convert
from .search import score_pairs, search


@hookimpl
def bertflow_tasks():
    return [
        TaskSpec(
            name="similarity",
            factory="bertflow_similarity",
            scorer="bertflow.similarity_scorer.v1",
            converters={"tsv": convert, "jsonl": convert},
            metrics=("sim_spearman", "sim_pearson"),
            config_overrides={"training.batcher": {"@batchers": "bertflow.batch_by_group.v1", "size": 16,
                                                   "group_attr": "sim_group"}},
            description="sentence embeddings (bi-encoder): doc.similarity, doc.vector, bertflow.search",
        ),
        TaskSpec(
            name="pair_classifier",
            factory="bertflow_pair_classifier",
            scorer="bertflow.pair_scorer.v1",
            converters={"tsv": convert, "jsonl": convert},
            metrics=("pair_spearman", "pair_pearson", "pair_acc", "pair_macro_f"),
            description="cross-encoder on (doc._.text_pair, doc): a 0-5 score or pair labels, bertflow.score_pairs",
        ),
    ]


@hookimpl
def bertflow_functions():
    return {"search": search, "score_pairs": score_pairs}


@hookimpl
def bertflow_cli(app):
    sim = typer.Typer(help="Sentence similarity (bertflow-similarity).", no_args_is_help=True)

    @sim.command("convert")
    def convert_cli(
        input_path: Path = typer.Argument(..., help="GLUE STS-B TSV or JSONL {text_a, text_b, score|label}."),
        output_path: Path = typer.Argument(..., help="Output .spacy file."),
        mode: str = typer.Option("bi", "--mode", help="bi: two docs per pair (bi-encoder); cross: one pair doc."),
        file_format: Optional[str] = typer.Option(None, "--format", help="tsv or jsonl (default: file suffix)."),
        lang: str = typer.Option("en", "--lang"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count malformed rows instead of failing."),
    ):
        """Convert sentence pairs to a .spacy DocBin."""
        typer.echo(run_or_fail(convert, input_path, output_path, mode=mode, file_format=file_format, lang=lang,
                               skip_bad=skip_bad).summary())

    app.add_typer(sim, name="similarity")
