"""``bertflow annotate MODEL INPUT OUTPUT``."""
from pathlib import Path
from typing import Optional

import typer

from bertflow.cli._app import app, fail, run_or_fail


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    input_path: Path = typer.Argument(..., help="Texts: .txt (one per line), .jsonl, .csv or .tsv; with a sharded "
                                      "engine also .parquet, a folder or a glob."),
    output_path: Path = typer.Argument(..., help="JSONL out, one object per input row (appended to when resuming); "
                                       "with a sharded engine a folder NAME.jsonl or NAME.parquet of part files."),
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
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (Ray actors, sharded); "
                               "plugins add more."),
    address: Optional[str] = typer.Option(None, "--address", help="ray: the cluster ('auto', 'ray://HEAD:10001'); "
                                          "default: start Ray on this machine."),
    workers: int = typer.Option(1, "--workers", help="ray: workers, each with the pipeline loaded once."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="ray: GPUs per worker (1: one per GPU)."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="ray: CPUs (torch threads) per worker."),
    shard_rows: int = typer.Option(10_000, "--shard-rows", help="ray: rows per shard (the unit of work, of output "
                                   "files and of resuming)."),
):
    """Annotate texts with every head of a pipeline, in input order; resumable, never drops a row."""
    from bertflow.inference.engines import AnnotateJob, run_annotate

    job = AnnotateJob(model=model, input=input_path, output=output_path, file_format=file_format,
                      text_field=text_field, question_field=question_field, id_field=id_field,
                      batch_size=batch_size, n_process=n_process, vectors=vectors, gpu_id=gpu_id,
                      chunk_size=chunk_size, overwrite=overwrite, address=address, workers=workers,
                      gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, shard_rows=shard_rows)
    try:
        report = run_or_fail(run_annotate, job, engine)
    except KeyboardInterrupt:
        fail(f"Interrupted. The rows written so far are kept in {output_path}: run the same command again "
             f"to resume from there.", code=130)
    typer.echo(report.summary(output_path))
