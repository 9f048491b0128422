"""``bertflow compress MODEL OUT --dev DEV.spacy --max-loss POINTS``: the
fastest pipeline within a loss (see ``bertflow.compress``)."""
import json
from pathlib import Path
from typing import List, Optional

import typer

from bertflow.cli._app import app, fail, run_or_fail
from bertflow.errors import Errors


def _layers(value: str) -> List[int]:
    try:
        return [int(k) for k in value.split(",") if k.strip()]
    except ValueError:
        fail(Errors.E163.format(bad=f"--layers {value!r} (student depths such as '3,4'; 0: precision rungs only)"))
        raise


@app.command("compress")
def compress_cli(
    model: str = typer.Argument(..., help="Trained pipeline (the teacher): directory or package name."),
    out_dir: Optional[Path] = typer.Argument(None, help="New directory for the chosen pipeline (left out: "
                                                        "measure and print the table only)."),
    dev: List[Path] = typer.Option(..., "--dev", help="Dev data (.spacy) every rung is scored on; repeatable."),
    max_loss: float = typer.Option(1.5, "--max-loss", help="Most points any head may lose against MODEL."),
    data: Optional[Path] = typer.Option(None, "--data", help="Texts the teacher labels to distil students "
                                                             "(.txt, .jsonl or .spacy), as bertflow distill --data."),
    student_encoder: List[str] = typer.Option([], "--student-encoder", help="An encoder from bertflow "
                                              "distill-encoder: a task student is distilled from it; repeatable."),
    student: List[Path] = typer.Option([], "--student", help="A student pipeline distilled before, measured as "
                                                             "it is; repeatable."),
    layers: str = typer.Option("3,4", "--layers", help="Student depths cut from the teacher's own layers when no "
                                                       "--student-encoder is given, smallest first, a deeper one "
                                                       "only if the shallower loses too much; 0: precision only."),
    steps: int = typer.Option(1000, "--steps", help="Distillation steps per student."),
    temperature: float = typer.Option(1.0, "--temperature", help="Distillation temperature."),
    hidden_weight: float = typer.Option(1.0, "--hidden-weight", help="Layer-to-layer hidden-state loss weight."),
    precision: List[str] = typer.Option([], "--precision", help="Reduced precision to try (int8, bf16); "
                                                                "default: int8, and bf16 where the CPU has it."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch size of the scoring and timing passes."),
    rounds: int = typer.Option(3, "--rounds", help="Timing passes per rung (rungs take turns; the best counts)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Keep the distilled students here (default: "
                                                                   "a temporary folder, removed afterwards)."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty OUT_DIR (replacing only the "
                                                      "pipeline's files)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the table as JSON here."),
):
    """Find the fastest pipeline within --max-loss points: int8/bf16 and distilled students, measured here."""
    from bertflow.compress.ladder import compress, format_ladder

    options = {"temperature": temperature, "hidden_weight": hidden_weight,
               "hidden_layers": "all" if hidden_weight else "last"}
    result = run_or_fail(compress, model, out_dir, dev, max_loss=max_loss, data=data,
                         student_encoders=student_encoder, students=student, layers=_layers(layers), steps=steps,
                         distill_options=options, precisions=precision or None, batch_size=batch_size,
                         rounds=rounds, workdir=workdir, seed=seed, force=force, log=typer.echo)
    typer.echo(format_ladder(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2))
    if out_dir is not None:
        typer.echo(f"{out_dir}: {result['chosen']} (spacy.load opens it; its meta.json keeps this table)")
