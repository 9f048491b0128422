"""``bertflow evaluate MODEL DATA...``: each head's metrics on the examples
annotated for it (one pass of the pipeline over all the data)."""
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

from ..errors import BertflowError
from ..loading import load_pipeline
from ._app import app, run_or_fail


def evaluate_pipeline(model: str, data: List[Path], *, batch_size: int = 64, gpu_id: int = -1) -> dict:
    """Plain function behind ``bertflow evaluate``: ``{"heads": {name: scores}, "n_examples", "docs_per_s"}``."""
    from spacy.training import Example

    from ..corpus import create_corpus_reader

    nlp = load_pipeline(model, gpu_id)
    examples = []
    for path in data:
        if not Path(path).exists():
            raise BertflowError(f"{path} does not exist: give .spacy files (convert raw data with 'bertflow <task> convert').")
        examples.extend(create_corpus_reader(Path(path))(nlp))
    if not examples:
        raise BertflowError(f"No examples in {', '.join(map(str, data))}.")
    start = time.perf_counter()
    docs = list(nlp.pipe((eg.predicted for eg in examples), batch_size=batch_size))
    elapsed = time.perf_counter() - start
    scored = [Example(doc, eg.reference) for doc, eg in zip(docs, examples)]
    heads: Dict[str, dict] = {}
    for name, pipe in nlp.pipeline:
        if getattr(pipe, "scorer", None) is None or not hasattr(pipe, "score"):
            continue
        annotated = [eg for eg in scored if pipe.is_annotated(eg)] if hasattr(pipe, "is_annotated") else scored
        if not annotated:
            continue  # nothing in the data for this head
        scores = pipe.score(annotated)
        if scores:
            heads[name] = {"n_examples": len(annotated), **scores}
    return {"model": str(model), "n_examples": len(examples), "docs_per_s": len(examples) / max(elapsed, 1e-9),
            "heads": heads}


def _main_metrics(scores: dict) -> List[tuple]:
    return [(k, v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


@app.command("evaluate")
def evaluate_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    data: List[Path] = typer.Argument(..., help="One or more .spacy files (mixed tasks are fine)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the JSON here."),
    batch_size: int = typer.Option(64, "--batch-size"),
    gpu_id: int = typer.Option(-1, "--gpu-id"),
):
    """Print each head's metrics (each scored on the examples annotated for it)."""
    result = run_or_fail(evaluate_pipeline, model, data, batch_size=batch_size, gpu_id=gpu_id)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['model']}: {result['n_examples']} examples, {result['docs_per_s']:.1f} docs/s")
    for head, scores in result["heads"].items():
        typer.echo(f"\n{head}")
        for key, value in _main_metrics(scores):
            typer.echo(f"  {key:<20} {value:.4f}" if isinstance(value, float) else f"  {key:<20} {value}")
