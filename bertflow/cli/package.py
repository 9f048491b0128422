"""``bertflow package MODEL OUTPUT_DIR [--precision int8 --dev DEV.spacy]``:
``spacy package`` with a precision switch and an accuracy guard."""
import json
from pathlib import Path
from typing import List, Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("package")
def package_cli(
    model: Path = typer.Argument(..., help="Trained pipeline directory (e.g. training/model-best)."),
    output_dir: Path = typer.Argument(..., help="Where spacy package writes the package."),
    precision: str = typer.Option("fp32", "--precision",
                                  help="fp32; int8 (dynamic quantisation, CPU); fp16 (autocast, GPU); bf16 (autocast, GPU or a CPU with native bf16)."),
    dev: List[Path] = typer.Option([], "--dev", help="Dev .spacy file(s) to check a reduced precision against fp32."),
    max_drop: float = typer.Option(1.0, "--max-drop", help="Refuse when any head's main metric drops more (points)."),
    name: Optional[str] = typer.Option(None, "--name", help="Package name (default: the pipeline's meta name)."),
    version: Optional[str] = typer.Option(None, "--version", help="Package version (default: the pipeline's meta version)."),
    build: str = typer.Option("sdist", "--build", help="sdist, wheel, or both (comma-separated)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Docs per batch while the guard scores dev."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
    force: bool = typer.Option(False, "--force", "-F", help="Overwrite an existing package directory."),
    int8_exclude: List[str] = typer.Option(
        [], "--int8-exclude", help="A Linear layer to keep out of int8 (full name, or its name in every layer, e.g. "
        "intermediate.dense); repeatable. Without it, int8 that fails the check is retried with the FFN "
        "up-projections kept out."),
):
    """Package a pipeline, optionally in reduced precision after checking every head against fp32."""
    from bertflow.compress.guard import format_check, package_pipeline

    report = run_or_fail(package_pipeline, model, output_dir, precision=precision, dev=dev, max_drop=max_drop,
                         name=name, version=version, build=build, batch_size=batch_size, gpu_id=gpu_id, force=force,
                         int8_exclude=list(int8_exclude) or None)
    if report:
        if "first_attempt" in report:
            typer.echo(f"int8 as configured lost {report['first_attempt']['worst_drop_points']:.2f} points; "
                       f"retried with the layers below kept out of int8.")
        typer.echo(format_check(report))
        typer.echo(f"✔ within {max_drop} points of fp32; figures in meta.json under bertflow_precision")
    typer.echo(json.dumps({"packaged": str(output_dir), "precision": precision}))
