"""``bertflow annotate MODEL INPUT OUTPUT``."""
from pathlib import Path
from typing import Optional

import typer

from ._app import app, fail, run_or_fail


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    input_path: Path = typer.Argument(..., help="Texts: .txt (one per line), .jsonl, .csv or .tsv."),
    output_path: Path = typer.Argument(..., help="JSONL out, one object per input row (appended to when resuming)."),
    file_format: Optional[str] = typer.Option(None, "--format", help="txt, jsonl, csv or tsv (default: suffix)."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL key / CSV column of the text."),
    question_field: str = typer.Option("question", "--question-field", help="Key/column of an optional question."),
    id_field: str = typer.Option("id", "--id-field", help="Key/column of an optional row id, copied to the output."),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per nlp.pipe batch."),
    n_process: int = typer.Option(1, "--n-process", help="Worker processes (CPU)."),
    vectors: bool = typer.Option(False, "--vectors", help="Also write doc.vector."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
    chunk_size: int = typer.Option(10_000, "--chunk-size",
                                   help="Rows per memory zone: the texts' strings are freed after each chunk."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start OUTPUT again instead of resuming it (or refusing an unrelated file)."),
):
    """Annotate texts with every head of a pipeline, in input order; resumable, never drops a row."""
    from ..annotate import annotate

    try:
        report = run_or_fail(annotate, model, input_path, output_path, file_format=file_format,
                             text_field=text_field, question_field=question_field, id_field=id_field,
                             batch_size=batch_size, n_process=n_process, vectors=vectors, gpu_id=gpu_id,
                             chunk_size=chunk_size, overwrite=overwrite)
    except KeyboardInterrupt:
        fail(f"Interrupted. The rows written so far are kept in {output_path}: run the same command again "
             f"to resume from there.", code=130)
    typer.echo(report.summary(output_path))
