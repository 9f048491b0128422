"""``bertflow distill TEACHER OUT --data TEXTS``: one smaller student with
every head of the teacher (see ``bertflow.distill``)."""
import json
from pathlib import Path
from typing import List, Optional

import typer

from bertflow.errors import Errors
from bertflow.cli._app import app, fail, run_or_fail


def _weights(values: List[str]) -> dict:
    weights = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            weights[name] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name:
            fail(Errors.E138.format(value=value))
    return weights


@app.command("distill")
def distill_cli(
    teacher: str = typer.Argument(..., help="Trained pipeline directory or installed package name."),
    out_dir: Path = typer.Argument(..., help="New directory for the student pipeline."),
    data: Path = typer.Option(..., "--data", help="Texts for the teacher to label: .txt, .jsonl or .spacy "
                                                  "(QA and cross-encoder heads need a .spacy file with the pairs)."),
    student_layers: Optional[str] = typer.Option(None, "--student-layers", help="K (layers spread evenly over the "
                                                 "teacher's, first and last kept), or indices such as '0,2,4' (of a 6-layer teacher). "
                                                 "Default: half the teacher's."),
    student: Optional[str] = typer.Option(None, "--student-encoder", "--student", help="Another pre-trained encoder "
                                          "(name or directory, e.g. from bertflow distill-encoder) with the teacher's "
                                          "vocabulary and width, instead of the teacher's layers."),
    steps: int = typer.Option(1000, "--steps", help="Training steps (batches)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Docs per step."),
    temperature: float = typer.Option(2.0, "--temperature", help="Softens teacher and student distributions."),
    learn_rate: float = typer.Option(5e-5, "--learn-rate", help="Peak learning rate (linear warm-up and decay)."),
    head_learn_rate: Optional[float] = typer.Option(None, "--head-learn-rate", help="The heads' rate (default: "
                                                    "--learn-rate)."),
    weight: List[str] = typer.Option([], "--weight", help="HEAD=W: weight of a head's loss (0 leaves it out); "
                                     "repeatable."),
    gold_weight: float = typer.Option(0.0, "--gold-weight", help="Mix in each head's loss on the data's gold labels."),
    soft_weight: float = typer.Option(1.0, "--soft-weight", help="Weight of the teacher's targets (0 with "
                                      "--gold-weight 1: the same student trained on gold labels alone)."),
    hidden_weight: float = typer.Option(0.0, "--hidden-weight", help="Add a cosine loss between the student's and "
                                        "the teacher's hidden states, with this weight."),
    hidden_layers: str = typer.Option("last", "--hidden-layers", help="'last': the last hidden states "
                                      "(DistilBERT); 'all': each student layer against the teacher layer it was "
                                      "copied from."),
    augment: int = typer.Option(0, "--augment", help="Also distil on N variants of each text with words swapped "
                                "for their nearest neighbours in the teacher's embeddings (teacher targets only)."),
    augment_prob: float = typer.Option(0.4, "--augment-prob", help="Chance that each word of a variant is "
                                       "swapped."),
    teacher_precision: Optional[str] = typer.Option(None, "--teacher-precision", help="Run the teacher in bf16 or "
                                                    "int8 for faster targets."),
    reinit_heads: bool = typer.Option(False, "--reinit-heads", help="Start the student's heads from random "
                                      "weights, not the teacher's."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on; -1 for the CPU."),
    seed: int = typer.Option(0, "--seed"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip lines of a .txt/.jsonl --data that can't be "
                                  "read (not UTF-8, not JSON), counting them, instead of stopping at the first."),
    force: bool = typer.Option(False, "--force", help="Replace a pipeline already saved at OUT_DIR."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write what was done as JSON here."),
):
    """Distill a pipeline into a smaller student with all its heads (DistilBERT-style)."""
    from bertflow.compress.distill import distill

    _, result = run_or_fail(distill, teacher, out_dir, data, student_layers=student_layers, student=student,
                            steps=steps, batch_size=batch_size, temperature=temperature, learn_rate=learn_rate,
                            head_learn_rate=head_learn_rate, weights=_weights(weight), gold_weight=gold_weight,
                            soft_weight=soft_weight, hidden_weight=hidden_weight, hidden_layers=hidden_layers,
                            augment=augment, augment_prob=augment_prob,
                            teacher_precision=teacher_precision, reinit_heads=reinit_heads, gpu_id=gpu_id,
                            seed=seed, force=force, skip_bad=skip_bad)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.__dict__, indent=2))
    source = (f"layers {result.layers} of {result.teacher_layers}" if result.layers is not None
              else f"encoder {result.student_encoder}")
    typer.echo(f"{out_dir}: {result.student_layers}-layer student ({source}) of {teacher}, {result.steps} steps "
               f"x {result.batch_size} docs in {result.seconds:.0f} s")
    for name in result.distilled:
        typer.echo(f"  {name}: loss {result.first_losses[name]:.4f} -> {result.losses[name]:.4f}")
    if "hidden_states" in result.losses:
        typer.echo(f"  hidden states: loss {result.first_losses['hidden_states']:.4f} -> "
                   f"{result.losses['hidden_states']:.4f}")
    for name, why in result.skipped.items():
        typer.echo(f"  {name}: not distilled ({why})")
