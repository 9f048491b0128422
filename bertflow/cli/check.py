"""``bertflow check MODEL``: fuzz classes and round-trips against a pipeline, as a pass/fail table."""
import typer

from bertflow.cli._app import app, fail, run_or_fail


@app.command("check")
def check_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    n_per_class: int = typer.Option(20, "--n-per-class", help="Texts per fuzz class (the two huge classes: 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated texts."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
):
    """Check that odd text never breaks the pipeline and that it survives serialisation."""
    from bertflow.inference.check import check_pipeline

    rows = run_or_fail(check_pipeline, model, n_per_class=n_per_class, seed=seed, gpu_id=gpu_id,
                       progress=lambda name: typer.echo(f"… {name}", err=True))
    width = max(len(name) for name, _, _ in rows)
    for name, ok, detail in rows:
        typer.echo(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failed = sum(not ok for _, ok, _ in rows)
    if failed:
        fail(f"{failed} of {len(rows)} checks failed")
    typer.echo(f"✔ all {len(rows)} checks passed")
