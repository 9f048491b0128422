"""``bertflow new-plugin NAME``: a ready-to-install task plugin distribution."""
from pathlib import Path

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("new-plugin")
def new_plugin_cli(
    name: str = typer.Argument(..., help="Task name, e.g. 'sentiment' or 'intent-detection'."),
    output_dir: Path = typer.Option(Path("."), "--output", "-o", help="Folder to create the distribution in."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing folder."),
):
    """Write bertflow-NAME/: setup.cfg with entry points, a head component, a
    converter, a scorer, tests and a spaCy project; it passes its own tests."""
    from bertflow.scaffold import new_plugin

    target = run_or_fail(new_plugin, name, output_dir, force=force)
    typer.secho(f"✔ Created {target}", fg=typer.colors.GREEN)
    typer.echo(f"  cd {target} && pip install -e . && python -m pytest tests")
