"""``bertflow train CONFIG``: ``spacy train`` in one process, data-parallel under torchrun.

    bertflow train config.cfg --output training --paths.train train.spacy --paths.dev dev.spacy
    torchrun --nproc-per-node 2 -m bertflow train config.cfg --output training ...
"""
from pathlib import Path
from typing import Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="The training config (as spacy train takes it)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where model-best and model-last go."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU to train on; -1 for the CPU. Under torchrun "
                               "with several processes, each rank takes the GPU LOCAL_RANK instead."),
    code: Optional[Path] = typer.Option(None, "--code", "-c", help="A Python file to import first (registered "
                                        "functions), as spacy train --code."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds a rank waits for the others at a "
                                  "collective before the job fails (several processes only)."),
    force: bool = typer.Option(False, "--force", help="Replace model-best/model-last already in --output."),
) -> None:
    """Train a pipeline: exactly spacy train in one process; launched with torchrun
    (--nproc-per-node N, --nnodes ...) every rank trains on its share of each
    batch and the gradients are averaged before each step, so N processes
    train step for step as one process on the whole batch. Config overrides
    (--paths.train ...) as spacy train."""
    from spacy.cli._util import import_code, parse_config_overrides

    from bertflow.training.train import train

    overrides = parse_config_overrides(ctx.args)
    import_code(code)
    run_or_fail(train, config_path, output, use_gpu=gpu_id, overrides=overrides, timeout_s=timeout,
                force=force)
