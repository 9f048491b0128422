"""``bertflow export-encoder PIPELINE OUT_DIR``: the command around ``bertflow.compress.export.export_encoder``."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("export-encoder")
def export_encoder_cli(
    pipeline: str = typer.Argument(..., help="Trained pipeline directory or installed package name."),
    out_dir: Path = typer.Argument(..., help="New directory for the Hugging Face model."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder component, where there are several."),
    head: Optional[str] = typer.Option(None, "--head", help="Head whose weights to include, where several have them."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty OUT_DIR (replacing the files it writes)."),
):
    """Export a pipeline's encoder (and its masked-LM head) as a Hugging Face model directory."""
    from bertflow.compress.export import export_encoder

    written = run_or_fail(export_encoder, pipeline, out_dir, encoder=encoder, head=head, force=force)
    typer.echo(f"{written['out_dir']}: {written['architecture']} from {pipeline} "
               f"(encoder {written['encoder']!r}{', head ' + repr(written['head']) if written['head'] else ''}); "
               f"files: {', '.join(written['files'])}")
    loader = "AutoModelForMaskedLM" if written["head"] else "AutoModel"  # a MaskedLM class without a head: random
    typer.echo(f"Use it: {loader}.from_pretrained({str(out_dir)!r}), or any bertflow project with "
               f"--vars.encoder {out_dir}")
