from pathlib import Path

import typer

from bertflow.errors import Errors
from bertflow.cli._app import app, fail, run_or_fail


@app.command("lr-sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lr_sweep_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Training config (.cfg)."),
    output_dir: Path = typer.Argument(..., help="Folder for one run per lr, best/ and sweep.json."),
    lrs: str = typer.Option("5e-5,4e-5,3e-5,2e-5", "--lrs", help="Comma-separated learning rates."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for the CPU."),
) -> None:
    """Train once per learning rate (the BERT paper's grid by default) and keep
    the best model on dev. Extra --section.key value options go to spacy train."""
    from bertflow.training.sweep import lr_sweep

    try:
        rates = [float(x) for x in lrs.split(",") if x.strip()]
    except ValueError:
        fail(Errors.E137.format(lrs=lrs))
    summary = run_or_fail(lr_sweep, config_path, output_dir, lrs=rates, gpu_id=gpu_id, overrides=ctx.args)
    typer.echo(summary["table"])
    typer.echo(f"best lr: {summary['best_lr']:g} (dev score {summary['best_score']:.4f}) -> {output_dir / 'best'}")
