"""``bertflow evaluate MODEL DATA...``: each head's metrics on the examples
annotated for it (one pass of the pipeline over all the data)."""
import json
from pathlib import Path
from typing import List, Optional

import typer

from bertflow.cli._app import app, run_or_fail


def evaluate_pipeline(model: str, data: List[Path], *, batch_size: int = 64, gpu_id: int = -1) -> dict:
    """Plain function behind ``bertflow evaluate``: ``{"heads": {name: scores}, "main_metrics": {name: key},
    "n_examples", "docs_per_s"}``; a head of an installed task lists its ``TaskSpec.metrics`` first."""
    from bertflow.training.evaluation import evaluate_nlp, read_examples
    from bertflow.files.loading import load_pipeline

    from bertflow.hooks.manager import get_tasks

    nlp = load_pipeline(model, gpu_id)
    result = {"model": str(model), **evaluate_nlp(nlp, read_examples(nlp, data), batch_size=batch_size)}
    by_factory = {task.factory: task for task in get_tasks().values()}
    result["main_metrics"] = {}
    for head in result["heads"]:
        task = by_factory.get(nlp.get_pipe_meta(head).factory)
        if task is not None and task.metrics:
            result["main_metrics"][head] = task.metrics[0]
            result["heads"][head] = dict(_order(result["heads"][head], task.metrics))
    return result


def _order(scores: dict, metrics) -> List[tuple]:
    """``n_examples``, then the task's declared ``TaskSpec.metrics`` in their order, then the rest."""
    first = [k for k in metrics if k in scores]
    return [("n_examples", scores["n_examples"])] * ("n_examples" in scores) + [(k, scores[k]) for k in first] + \
        [(k, v) for k, v in scores.items() if k not in first and k != "n_examples"]


def _main_metrics(scores: dict) -> List[tuple]:
    return [(k, v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


@app.command("evaluate")
def evaluate_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    data: List[Path] = typer.Argument(..., help="One or more .spacy files (mixed tasks are fine)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the JSON here."),
    batch_size: int = typer.Option(64, "--batch-size", help="Docs per nlp.pipe batch."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
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
        main = result["main_metrics"].get(head)
        typer.echo(f"\n{head}" + (f"  (main metric: {main})" if main else ""))
        for key, value in _main_metrics(scores):
            typer.echo(f"  {key:<20} {value:.4f}" if isinstance(value, float) else f"  {key:<20} {value}")
