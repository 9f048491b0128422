"""``bertflow init config``: a training config for any set of installed heads."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.cli._app import app, run_or_fail

init_app = typer.Typer(help="Write starter files (training configs).", no_args_is_help=True)
app.add_typer(init_app, name="init")


@init_app.command("config")
def init_config_cli(
    output: Path = typer.Argument(..., help="Where to write the config, or - for stdout."),
    tasks: str = typer.Option(..., "--tasks", "-t", help="Comma-separated task names, e.g. textcat,ner (see 'bertflow plugins')."),
    encoder: str = typer.Option("minilm-l6", "--encoder", "-e", help="Encoder short name or local model directory."),
    gpu: bool = typer.Option(False, "--gpu", help="Mixed precision and the PyTorch allocator (still runs on CPU)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Add the heads to this trained pipeline, its components frozen."),
    lang: str = typer.Option("en", "--lang", help="spaCy language code of a new pipeline."),
    max_steps: int = typer.Option(2000, "--max-steps", help="Training steps."),
    lr: float = typer.Option(5e-5, "--lr", help="Peak learning rate."),
    force: bool = typer.Option(False, "--force", help="Replace an existing config file."),
):
    """Write a commented spacy train config: the shared encoder and one head per task."""
    from bertflow.training.config import make_config
    from bertflow.files.outputs import check_new_output

    if str(output) != "-":
        run_or_fail(check_new_output, output, force, "The config")
    text = run_or_fail(make_config, tasks.split(","), encoder=encoder, gpu=gpu, base=base, lang=lang,
                       max_steps=max_steps, lr=lr)
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf8")
    typer.secho(f"✔ Wrote {output} (tasks: {tasks}). Train it with:", fg=typer.colors.GREEN)
    typer.echo(f"  spacy train {output} --paths.train train.spacy --paths.dev dev.spacy")
