"""``bertflow serve MODEL``."""
from typing import Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("serve")
def serve_cli(
    model: str = typer.Argument(..., help="Pipeline directory or installed package name."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="Server processes on this machine, each with the model."),
    runners: int = typer.Option(1, "--runners", help="Copies of the model in each worker, each on its own "
                                "thread, taking batches from the worker's one queue (on a CPU: one per core for "
                                "the most throughput)."),
    threads: int = typer.Option(0, "--threads", help="Torch threads per runner; 0: this machine's cores shared out "
                                "among all runners (one runner in one worker: torch's default)."),
    max_batch: int = typer.Option(32, "--max-batch", help="At most this many texts per model batch."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms",
                                      help="How long the oldest waiting text waits for others to join its batch."),
    max_text_chars: int = typer.Option(100_000, "--max-text-chars", help="Longest text accepted (characters)."),
    max_texts: int = typer.Option(1_000, "--max-texts", help="Most texts in one request."),
    max_body_bytes: int = typer.Option(10 * 2 ** 20, "--max-body-bytes", help="Largest request body (bytes)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env",
                                              help="Environment variable holding the API key clients must send "
                                              "as 'Authorization: Bearer KEY' (default: no key)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
    engine: str = typer.Option("local", "--engine", help="local (uvicorn on this machine) or ray (Ray Serve)."),
    replicas: int = typer.Option(1, "--replicas", help="ray: replicas, each with the model."),
    address: Optional[str] = typer.Option(None, "--address", help="ray: the cluster ('auto'); default: start Ray "
                                          "on this machine."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level (warning: no access log)."),
):
    """Serve a pipeline over HTTP, batching concurrent requests into one encoder pass (docs/serve.md)."""
    from bertflow.serve.app import ServeSettings
    from bertflow.serve.run import serve

    settings = ServeSettings(model=model, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             max_text_chars=max_text_chars, max_texts=max_texts, max_body_bytes=max_body_bytes,
                             api_key_env=api_key_env, gpu_id=gpu_id, runners=runners, threads=threads)
    run_or_fail(serve, settings, host=host, port=port, workers=workers, engine=engine, replicas=replicas,
                address=address, log_level=log_level)
