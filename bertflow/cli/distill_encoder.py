"""``bertflow distill-encoder TEACHER OUT --text FILE...``: general
distillation of an encoder on raw text (see ``bertflow.distill_encoder``)."""
import json
from pathlib import Path
from typing import List, Optional

import typer

from bertflow.cli._app import app, run_or_fail


@app.command("distill-encoder")
def distill_encoder_cli(
    teacher: str = typer.Argument(..., help="Encoder name or directory (minilm-l6, a Hugging Face model "
                                            "directory), or a pipeline whose encoder to distil."),
    out_dir: Path = typer.Argument(..., help="New directory for the student encoder (Hugging Face layout)."),
    text: List[Path] = typer.Option(..., "--text", help=".txt (a text per line) or .jsonl ('text' field) file, "
                                                        "or a folder of them; repeatable."),
    layers: str = typer.Option("3", "--layers", help="K teacher layers spread evenly (first and last kept), or "
                                                     "indices such as '0,3,5'."),
    steps: int = typer.Option(2000, "--steps", help="Training steps (batches)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows of text per step."),
    max_length: int = typer.Option(128, "--max-length", help="Wordpieces per window; longer texts continue in "
                                                            "the next window."),
    learn_rate: float = typer.Option(1e-4, "--learn-rate", help="Peak learning rate (linear warm-up and decay)."),
    warmup: float = typer.Option(0.05, "--warmup", help="Fraction of the steps spent warming up."),
    hidden_weight: float = typer.Option(1.0, "--hidden-weight", help="Weight of the hidden-state loss."),
    relation_weight: float = typer.Option(1.0, "--relation-weight", help="Weight of the last layer's "
                                                                         "attention-relation loss (MiniLMv2)."),
    hidden_layers: str = typer.Option("last", "--hidden-layers", help="'last', or 'all': each student layer "
                                                                      "against the teacher layer it came from."),
    relation_heads: Optional[int] = typer.Option(None, "--relation-heads", help="Relation heads (default: the "
                                                                                "teacher's attention heads)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="Forward passes in bf16 autocast (default: "
                                                                     "on a GPU or a CPU with native bf16)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
    seed: int = typer.Option(0, "--seed"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable lines, counting them."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty OUT_DIR (replacing only the "
                                                      "files an encoder directory holds)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write what was done as JSON here."),
):
    """Distil an encoder into K of its layers on raw text, once, for every task (MiniLM/DistilBERT-style)."""
    from dataclasses import asdict

    from bertflow.compress.encoder_distill import distill_encoder

    _, result = run_or_fail(distill_encoder, teacher, out_dir, text, layers=layers, steps=steps,
                            batch_size=batch_size, max_length=max_length, learn_rate=learn_rate, warmup=warmup,
                            hidden_weight=hidden_weight, relation_weight=relation_weight,
                            hidden_layers=hidden_layers, relation_heads=relation_heads, bf16=bf16, gpu_id=gpu_id, seed=seed,
                            skip_bad=skip_bad, force=force)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(asdict(result), indent=2))
    typer.echo(f"{out_dir}: {result.student_layers}-layer encoder (layers {result.layers} of "
               f"{result.teacher_layers}) of {result.teacher}, {result.steps} steps x {result.batch_size} windows "
               f"({result.wordpieces} wordpieces, {result.passes} full passes) in {result.seconds:.0f} s")
    for name, last in result.losses.items():
        typer.echo(f"  {name}: loss {result.first_losses[name]:.4f} -> {last:.4f}")
    typer.echo(f"Use it: name = \"{out_dir}\" in an encoder's config, or bertflow distill TEACHER_PIPELINE OUT "
               f"--student-encoder {out_dir}")
