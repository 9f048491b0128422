import json
import platform
from importlib.metadata import PackageNotFoundError, version

import typer

from bertflow.errors import BertflowError, Errors
from bertflow.encoder.names import DEFAULT_ENCODER, known_encoders, resolve_encoder
from bertflow.cli._app import app, run_or_fail

PACKAGES = ("bertflow", "spacy", "spacy-transformers", "thinc", "transformers", "tokenizers", "torch", "pluggy")


def collect_info(encoder: str = DEFAULT_ENCODER, gpu_id: int = -1) -> dict:
    """Plain function behind ``bertflow info``: resolved encoder, device, versions."""
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    if gpu_id >= 0:
        if not torch.cuda.is_available():
            raise BertflowError(
                Errors.E032.format(gpu_id=gpu_id, torch___version__=torch.__version__)
            )
        device = f"cuda:{gpu_id} ({torch.cuda.get_device_name(gpu_id)})"
    else:
        device = "cpu"
    path = resolve_encoder(encoder)
    details = {"name": encoder, "path": path}
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(path)
        details.update(model_type=cfg.model_type, layers=cfg.num_hidden_layers, width=cfg.hidden_size,
                       max_positions=getattr(cfg, "max_position_embeddings", None))
    except Exception as err:  # a hub name offline: report, don't fail
        details["error"] = str(err).splitlines()[0]
    return {
        "encoder": details,
        "known_encoders": sorted(known_encoders()),
        "device": device,
        "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


@app.command("info")
def info_cli(
    encoder: str = typer.Option(DEFAULT_ENCODER, "--encoder", "-e", help="Encoder name or model directory."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for the CPU."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the resolved encoder, the device and the versions of the stack."""
    info = run_or_fail(collect_info, encoder, gpu_id)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    enc = info["encoder"]
    typer.echo(f"encoder:   {enc['name']} -> {enc['path']}")
    if "layers" in enc:
        typer.echo(f"           {enc['model_type']}, {enc['layers']} layers, width {enc['width']}, "
                   f"max {enc['max_positions']} positions")
    typer.echo(f"known:     {', '.join(info['known_encoders'])}")
    typer.echo(f"device:    {info['device']}")
    typer.echo(f"python:    {info['python']} on {info['platform']}")
    for pkg, ver in info["versions"].items():
        typer.echo(f"{pkg + ':':<20}{ver or '-'}")
