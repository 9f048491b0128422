"""``bertflow compress``: the fastest pipeline within a loss, measured here.

It climbs a ladder of cheaper pipelines for one trained pipeline (the
teacher), measures every rung on the user's dev data and on the machine it
runs on, and saves the fastest rung whose worst head stays within
``max_loss`` points of the teacher:

1. the teacher in each reduced precision this machine runs (int8; bf16 where
   the CPU has native bf16 matmuls);
2. students: pipelines the user distilled before (``students``), students
   distilled now from general-distilled encoders (``student_encoders``, from
   ``bertflow distill-encoder``), or else students of K of the teacher's own
   layers for each K in ``layers``, smallest first, a deeper one only while
   no rung of the shallower one was within the loss; each in fp32 and in
   every reduced precision.

Every rung gets its score on all of dev (each head's main metric, the loss
is the worst head's drop in points) and its docs/s over the same texts at
``batch_size``: the rungs take turns, ``rounds`` times, best pass kept, so a
slow spell of a shared machine falls on all of them. The chosen pipeline is
an ordinary pipeline directory (precision in its config) with the whole
table in ``meta["bertflow_compress"]``.
"""
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from bertflow.compress.guard import load_with_precision, main_metrics
from bertflow.compress.student import check_apart
from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import check_output_dir, output_lock, write_pipeline
from bertflow.training.evaluation import evaluate_nlp, read_examples


@dataclass
class Rung:
    """One pipeline on the ladder, as measured."""

    name: str
    path: str
    precision: str
    layers: int
    scores: Dict[str, float] = field(default_factory=dict)  # "head/metric" -> value
    loss_points: float = 0.0  # the worst head's drop from the teacher fp32, in points
    docs_per_s: float = 0.0
    speedup: float = 1.0
    within: bool = True
    frontier: bool = False
    made_s: float = 0.0  # seconds spent making it (distillation)


def reduced_precisions() -> List[str]:
    """The reduced precisions worth a rung on this machine's CPU."""
    from bertflow.encoder.precision import cpu_has_native_bf16

    return ["int8"] + (["bf16"] if cpu_has_native_bf16() else [])


def _flat_scores(nlp, evaluation: dict) -> Dict[str, float]:
    return {f"{head}/{key}": value for head, metrics in main_metrics(nlp, evaluation["heads"]).items()
            for key, value in metrics.items()}


def _encoder_layers(nlp) -> int:
    from bertflow.compress.guard import encoder_models

    return int(encoder_models(nlp)[0].transformer.config.num_hidden_layers)


def measure_speed(pipelines: Dict[str, object], texts: List[str], batch_size: int, rounds: int) -> Dict[str, float]:
    """docs/s of each pipeline over ``texts``: best of ``rounds`` passes, the
    pipelines taking turns within each round."""
    best = dict.fromkeys(pipelines, 0.0)
    for _ in range(rounds):
        for name, nlp in pipelines.items():
            start = time.perf_counter()
            n = sum(1 for _ in nlp.pipe(texts, batch_size=batch_size))
            best[name] = max(best[name], n / max(time.perf_counter() - start, 1e-9))
    return best


def frontier(rungs: List[Rung]) -> None:
    """Mark the rungs no other rung beats on both speed and loss."""
    for rung in rungs:
        rung.frontier = not any(other is not rung and other.docs_per_s >= rung.docs_per_s
                                and other.loss_points <= rung.loss_points
                                and (other.docs_per_s > rung.docs_per_s or other.loss_points < rung.loss_points)
                                for other in rungs)


def check_compress_settings(max_loss: float, layers: Sequence[int], steps: int, batch_size: int,
                            rounds: int, data, student_encoders: Sequence, students: Sequence) -> None:
    """One error naming every bad setting, before anything loads."""
    bad = []
    if max_loss < 0:
        bad.append(f"max_loss={max_loss} (0 or more points)")
    if not layers or any(k < 0 for k in layers):
        bad.append(f"layers={list(layers)} (student depths; 0 alone: precision rungs only)")
    if steps < 1 or batch_size < 1 or rounds < 1:
        bad.append(f"steps={steps}, batch_size={batch_size}, rounds={rounds} (each at least 1)")
    distils = bool(student_encoders) or (not students and any(k > 0 for k in layers))
    if distils and data is None:
        bad.append("no data: distilling a student needs texts for the teacher to label (--data), or give "
                   "--student PIPELINE for students distilled before, or --layers 0 for precision rungs only")
    if bad:
        raise BertflowError(Errors.E163.format(bad="; ".join(bad)))


def compress(
    model: Union[str, Path],
    out_dir: Optional[Union[str, Path]],
    dev: Union[str, Path, Sequence[Union[str, Path]]],
    *,
    max_loss: float = 1.5,
    data: Optional[Union[str, Path]] = None,
    student_encoders: Sequence[Union[str, Path]] = (),
    students: Sequence[Union[str, Path]] = (),
    layers: Sequence[int] = (3, 4),
    steps: int = 1000,
    distill_options: Optional[dict] = None,
    precisions: Optional[Sequence[str]] = None,
    batch_size: int = 32,
    rounds: int = 3,
    workdir: Optional[Union[str, Path]] = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    log=print,
) -> dict:
    """Measure the ladder for ``model`` on ``dev`` and save the fastest rung
    within ``max_loss`` points to ``out_dir`` (None: measure only).

    data: texts for the teacher to label when distilling students (as ``bertflow distill --data``).
    student_encoders: encoders from ``bertflow distill-encoder``: one task student each.
    students: pipelines distilled before, measured as they are.
    layers: student depths to distil from the teacher's own layers when no
        student encoder is given, smallest first (``[0]``: precision rungs only).
    distill_options: more options for ``bertflow.distill`` (temperature, hidden_weight, augment, ...).
    precisions: reduced precisions to try (default: int8, and bf16 where the CPU has it).
    workdir: where distilled students are kept (default: a temporary folder, removed after).
    RETURNS (dict): ``rungs`` (the table), ``chosen``, ``teacher``, ``max_loss``, ``dev``, ``out_dir``.
    """
    layers = [int(k) for k in layers]
    check_compress_settings(max_loss, layers, steps, batch_size, rounds, data, student_encoders, students)
    devs = [Path(p) for p in ([dev] if isinstance(dev, (str, Path)) else dev)]
    if not devs:
        raise BertflowError(Errors.E067)
    for path in [*devs, *([Path(data)] if data is not None else []), *map(Path, students)]:
        if not path.exists():
            raise BertflowError(Errors.E056.format(path=path))
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        check_output_dir(out_path, force)
        check_apart(out_path, model)
    precisions = list(precisions) if precisions is not None else reduced_precisions()
    unknown = [p for p in precisions if p not in ("int8", "bf16")]
    if unknown:
        raise BertflowError(Errors.E163.format(bad=f"precisions={unknown} (int8, or bf16 on a CPU with native bf16)"))
    if "bf16" in precisions and "bf16" not in reduced_precisions():
        raise BertflowError(Errors.E163.format(bad="precision bf16: this CPU has no native bf16 matmuls (AMX or "
                                                   "AVX512-BF16), where bf16 is slower than fp32; try int8"))
    settings = dict(max_loss=max_loss, data=data, student_encoders=student_encoders, students=students,
                    layers=layers, steps=steps, distill_options=distill_options, precisions=precisions,
                    batch_size=batch_size, rounds=rounds, workdir=workdir, seed=seed, force=force,
                    progress=progress, log=log)
    if out_path is None:
        return _climb(model, None, devs, **settings)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_path, command="bertflow compress"):  # held from the start: a second run stops now
        return _climb(model, out_path, devs, **settings)


def _climb(model, out_path: Optional[Path], devs: List[Path], *, max_loss, data, student_encoders, students,
           layers, steps, distill_options, precisions, batch_size, rounds, workdir, seed, force, progress,
           log) -> dict:
    import spacy

    own_work = workdir is None
    work = Path(tempfile.mkdtemp(prefix="bertflow-compress-")) if own_work else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        rungs, pipelines = [], {}

        def add(name: str, path: Path, precision: str, made_s: float = 0.0) -> Rung:
            nlp = load_with_precision(path, precision)
            nlp("Warm-up: the first call quantises (int8) or compiles kernels; it is not timed.")
            evaluation = evaluate_nlp(nlp, read_examples(nlp, devs), batch_size=batch_size)
            if not evaluation["heads"]:
                raise BertflowError(Errors.E068.format(model=path, dev=", ".join(map(str, devs))))
            rung = Rung(name=name, path=str(path), precision=precision, layers=_encoder_layers(nlp),
                        scores=_flat_scores(nlp, evaluation), made_s=made_s)
            if rungs:
                reference = rungs[0].scores
                rung.loss_points = max(100 * (reference[k] - rung.scores.get(k, 0.0)) for k in reference)
            rung.within = rung.loss_points <= max_loss
            rungs.append(rung)
            pipelines[name] = nlp
            log(f"  {name:<28} {rung.precision:<5} {rung.layers} layers  loss {rung.loss_points:+.2f} points  "
                + "  ".join(f"{k} {v:.4f}" for k, v in rung.scores.items()))
            return rung

        log(f"Scoring the ladder of {model} on {', '.join(map(str, devs))}")
        add("teacher", Path(model), "fp32")
        for precision in precisions:
            add(f"teacher {precision}", Path(model), precision)
        def add_student(name: str, path: Path, seconds: float = 0.0) -> None:
            for precision in ["fp32", *precisions]:
                add(name if precision == "fp32" else f"{name} {precision}", path, precision, seconds)

        for path in students:
            label = Path(path).name
            add_student(label if label.startswith("student") else f"student {label}", Path(path))
        plan = ([("encoder", Path(e)) for e in student_encoders] if student_encoders
                else [] if students else [("layers", k) for k in layers if k > 0])
        for kind, what in plan:
            if kind == "layers" and any(r.within for r in rungs if r.name.startswith("student")):
                break  # a shallower student is within the loss: a deeper one is only slower
            name = f"student {what.name}" if kind == "encoder" else f"student {what}-layer"
            options = {"steps": steps, "seed": seed, "force": True, "progress": progress, **(distill_options or {})}
            options.update({"student": str(what)} if kind == "encoder" else {"student_layers": what})
            out = work / name.replace(" ", "-")
            log(f"Distilling {name} ({steps} steps on {data})")
            from bertflow.compress.distill import distill

            _, report = distill(str(model), out, str(data), **options)
            add_student(name, out, report.seconds)
        texts = [eg.predicted.text for eg in read_examples(spacy.blank(pipelines["teacher"].lang), devs)]
        log(f"Timing {len(rungs)} rungs on {len(texts)} dev texts, batch {batch_size}, best of {rounds} rounds")
        speeds = measure_speed(pipelines, texts, batch_size, rounds)
        for rung in rungs:
            rung.docs_per_s = speeds[rung.name]
            rung.speedup = rung.docs_per_s / max(speeds["teacher"], 1e-9)
        frontier(rungs)
        chosen = max((r for r in rungs if r.within), key=lambda r: r.docs_per_s)
        result = {"teacher": str(model), "dev": [str(p) for p in devs], "max_loss": max_loss,
                  "batch_size": batch_size, "rounds": rounds, "machine": _machine(),
                  "rungs": [asdict(r) for r in rungs], "chosen": chosen.name,
                  "out_dir": str(out_path) if out_path is not None else None}
        if out_path is not None:
            nlp = pipelines[chosen.name]
            nlp.meta["bertflow_compress"] = result
            write_pipeline(nlp, out_path, force=force)
        return result
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _machine() -> str:
    """The CPU the ladder was timed on (its model name where Linux says it)."""
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} torch threads"


def format_ladder(result: dict) -> str:
    """The frontier table as plain text: one row per rung."""
    lines = [f"{'rung':<30} {'prec':<5} {'layers':>6} {'docs/s':>8} {'x teacher':>9} {'loss':>7}  score(s)"]
    for r in result["rungs"]:
        marks = ("*" if r["name"] == result["chosen"] else " ") + ("f" if r["frontier"] else " ")
        scores = ", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items())
        lines.append(f"{marks}{r['name']:<28} {r['precision']:<5} {r['layers']:>6} {r['docs_per_s']:8.1f} "
                     f"{r['speedup']:9.2f} {r['loss_points']:+7.2f}  {scores}")
    lines.append(f"* chosen: the fastest within {result['max_loss']} points; f: on the frontier (nothing is both "
                 f"faster and closer to the teacher)")
    return "\n".join(lines)
