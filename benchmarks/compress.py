"""Compression end to end: general distillation of minilm-l6 on raw English
(``bertflow distill-encoder``), its STS-B zero-shot Spearman, task students
distilled from it and from the teacher's own layers (same steps), and the
``bertflow compress`` ladder over all of them on the task's dev split.

    python benchmarks/compress.py --tasks ner --teacher ner=DIR --gd-steps 1500 --steps 1350

1. Raw text: the *train* splits only (SQuAD contexts, SST-2, STS-B and
   CoNLL-2003 sentences under ../shared/data), one text per line.
2. ``distill-encoder minilm-l6 --layers K`` on it.
3. STS-B dev zero-shot (mean-pooled last hidden states, cosine, Spearman):
   the teacher, the same K layers cut out untrained, the general student.
4. Per task: the student of the teacher's own K layers (``bertflow distill
   --student-layers K``) and the student from the general encoder
   (``--student-encoder``), same steps, same losses; then ``bertflow
   compress`` measures teacher fp32/int8(/bf16) and both students in every
   precision on the full dev split and saves the fastest within --max-loss.

Everything stays in --workdir; a second run reuses what is there. Writes
benchmarks/results/compress.json and the ``compress`` section of BENCHMARKS.md.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "compress.json"


def write_raw_text(data: Path, out: Path) -> dict:
    """One text per line from every train split; returns lines and words per source."""
    from ner_conll import read_conll

    out.mkdir(parents=True, exist_ok=True)
    sources = {}
    squad = json.loads((data / "squad" / "train.json").read_text(encoding="utf8"))
    sources["squad"] = list(dict.fromkeys(p["context"] for a in squad["data"] for p in a["paragraphs"]))
    with open(data / "sst2" / "train.tsv", encoding="utf8") as f:
        sources["sst2"] = [r[0] for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    with open(data / "stsb" / "train.tsv", encoding="utf8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        a, b = rows[0].index("sentence1"), rows[0].index("sentence2")
        sources["stsb"] = list(dict.fromkeys(t for r in rows[1:] if len(r) == len(rows[0]) for t in (r[a], r[b])))
    sources["conll"] = [" ".join(words) for words, _ in read_conll(data / "conll2003" / "train.txt")]
    counts = {}
    for name, texts in sources.items():
        texts = [" ".join(t.split()) for t in texts if t.strip()]
        (out / f"{name}.txt").write_text("".join(t + "\n" for t in texts), encoding="utf8")
        counts[name] = {"texts": len(texts), "words": sum(len(t.split()) for t in texts)}
    return counts


def stsb_zero_shot(model, tokenizer, pairs, batch: int = 64) -> float:
    """Spearman of the cosine of mean-pooled last hidden states (all-MiniLM's own pooling)."""
    import torch
    from bertflow_similarity.scorer import spearman

    def embed(texts):
        out = []
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start: start + batch], padding=True, truncation=True, max_length=128,
                            return_tensors="pt")
            with torch.no_grad():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    a, b = embed([p[0] for p in pairs]), embed([p[1] for p in pairs])
    return float(spearman([p[2] for p in pairs], (a * b).sum(-1).tolist()))


def stage_general(args, work: Path, result: dict) -> Path:
    import bertflow

    raw = work / "raw"
    if "corpus" not in result or not raw.exists():
        result["corpus"] = write_raw_text(args.data, raw)
    out = work / f"general-l{args.layers}-s{args.gd_steps}"
    if not (out / "config.json").exists():
        _, report = bertflow.distill_encoder(args.encoder, out, [raw], layers=args.layers, steps=args.gd_steps,
                                             batch_size=32, max_length=128, learn_rate=args.gd_lr,
                                             progress=args.progress)
        result["general"] = {k: v for k, v in report.__dict__.items()}
        result["general_command"], result["general_machine"] = command(args, args.tasks), machine()
    else:
        result.setdefault("general", json.loads((out / "bertflow_encoder_distill.json").read_text()))
    return out


def stage_stsb(args, general: Path, result: dict) -> None:
    import copy

    from transformers import AutoModel, AutoTokenizer

    from bertflow.compress.student import keep_layers, student_layer_indices
    from bertflow.encoder.names import resolve_encoder
    from similarity_stsb import read_stsb

    pairs = read_stsb(args.data / "stsb" / "dev.tsv")
    path = resolve_encoder(args.encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    teacher = AutoModel.from_pretrained(path).eval()
    cut = copy.deepcopy(teacher)
    keep_layers(cut, student_layer_indices(teacher.config.num_hidden_layers, args.layers))
    student = AutoModel.from_pretrained(str(general)).eval()
    result["stsb"] = {name: stsb_zero_shot(model, tokenizer, pairs)
                      for name, model in (("teacher", teacher), ("cut", cut), ("general", student))}
    print(json.dumps({"stsb": result["stsb"]}), flush=True)


def task_teacher(args, task: str, files: dict, tw: Path, result: dict) -> Path:
    """The teacher given for ``task`` (--teacher), or one trained here from the task project's config on
    the whole train split (--teacher-steps) and kept in the workdir."""
    given = dict(t.split("=", 1) for t in args.teacher)
    if task in given:
        return Path(given[task])
    steps = dict(t.split("=", 1) for t in args.teacher_steps).get(task)
    if steps is None:
        raise SystemExit(f"no teacher for {task}: give --teacher {task}=DIR or --teacher-steps {task}=STEPS")
    from distill import project_lr, train_teacher

    out = tw / f"teacher-s{steps}"
    if not (out / "model-last" / "meta.json").exists():
        targs = argparse.Namespace(encoder=args.encoder, seed=0)
        seconds = train_teacher(task, files, out, int(steps), project_lr(task), targs)
        result.setdefault("tasks", {}).setdefault(task, {})["teacher_train_s"] = seconds
        RESULTS.write_text(json.dumps(result, indent=2))
    return out / "model-last"


def stage_task(args, task: str, general: Path, work: Path, result: dict) -> None:
    import bertflow
    from distill import prepare

    tw = work / task
    files = prepare(task, args.data, tw)
    teacher = task_teacher(args, task, files, tw, result)
    wanted = set(args.students.split(","))
    kinds = {"own": ("own layers", "cut"), "general": ("general", "general")}  # --students name: (label, dir)
    students = {label: tw / f"student-{slug}-l{args.layers}-s{args.steps}"
                for name, (label, slug) in kinds.items() if name in wanted}
    encoders = {"general": general}
    if args.gd_from_teacher:  # general distillation from the fine-tuned teacher, on the same raw text
        encoders["general from teacher"] = tw / f"general-from-teacher-l{args.layers}-s{args.gd_steps}"
        students["general from teacher"] = tw / f"student-general-from-teacher-l{args.layers}-s{args.steps}"
        if not (encoders["general from teacher"] / "config.json").exists():
            _, report = bertflow.distill_encoder(str(teacher), encoders["general from teacher"], [work / "raw"],
                                                 layers=args.layers, steps=args.gd_steps, batch_size=32,
                                                 max_length=128, learn_rate=args.gd_lr, progress=args.progress)
            result.setdefault("tasks", {}).setdefault(task, {})["general_from_teacher"] = dict(report.__dict__)
            RESULTS.write_text(json.dumps(result, indent=2))
    timings = result.setdefault("tasks", {}).setdefault(task, {}).setdefault("train_s", {})
    for name, out in students.items():
        if (out / "meta.json").exists():
            continue
        how = {"student_layers": args.layers} if name == "own layers" else {"student": str(encoders[name])}
        _, report = bertflow.distill(str(teacher), out, str(files["texts"]), steps=args.steps, batch_size=32,
                                     temperature=1.0, learn_rate=1e-4, hidden_weight=1.0, hidden_layers="all",
                                     teacher_precision="bf16", seed=0, force=True, progress=args.progress, **how)
        timings[name] = report.seconds
        RESULTS.write_text(json.dumps(result, indent=2))
    ladder = bertflow.compress_pipeline(str(teacher), tw / "compressed", files["dev"], max_loss=args.max_loss,
                                        students=list(students.values()), rounds=args.rounds, force=True,
                                        log=lambda line: print(line, flush=True))
    result["tasks"][task].update({"teacher": str(teacher), "ladder": ladder, "command": command(args, task),
                                  "machine": machine(), "students": {k: str(v) for k, v in students.items()}})


def command(args, task: str) -> str:
    """The command that made ``task``'s ladder."""
    parts = ["python benchmarks/compress.py", f"--tasks {task}",
             *(f"--teacher {t}" for t in args.teacher if t.startswith(task + "=")),
             *(f"--teacher-steps {t}" for t in args.teacher_steps if t.startswith(task + "=")),
             f"--students {args.students}", f"--layers {args.layers}", f"--steps {args.steps}",
             f"--max-loss {args.max_loss:g}"]
    if "general" in args.students.split(",") or args.gd_from_teacher:
        parts.append(f"--gd-steps {args.gd_steps}")
    if args.gd_from_teacher:
        parts.append("--gd-from-teacher")
    return " ".join(parts)


def report_md(args, result: dict) -> str:
    g = result.get("general", {})
    lines = ["## Compression: general distillation, task students, the measured ladder", "",
             "Teachers: minilm-l6 fine-tuned 3 epochs on the task. Each part names the command and the machine "
             "that made it.", ""]
    if g:
        lines += [f"General distillation: machine {result['general_machine']}; command "
                  f"`{result['general_command']}`.", ""] if "general_command" in result else []
        corpus = result.get("corpus", {})
        words = sum(c["words"] for c in corpus.values()) if corpus else None
        lines += [f"General distillation (`bertflow distill-encoder {g['teacher']} --layers {g['student_layers']} "
                  f"--steps {g['steps']}`): {g['steps']} steps x {g['batch_size']} windows of up to {g['max_length']} wordpieces "
                  f"({g['wordpieces']:,} wordpieces, " + (f"{g['passes']} full passes" if g['passes'] else "less than one pass")
                  + (f" over {words:,} words of train-split text" if words else "") +
                  f") in {g['seconds'] / 60:.1f} min; hidden loss {g['first_losses'].get('hidden', 0):.3f} -> "
                  f"{g['losses'].get('hidden', 0):.3f}, relation loss {g['first_losses'].get('relations', 0):.3f}"
                  f" -> {g['losses'].get('relations', 0):.3f}.", ""]
    if "stsb" in result:
        s = result["stsb"]
        lines += ["| STS-B dev zero-shot (mean pooling, cosine) | Spearman | of teacher |", "|---|---|---|"]
        for name, label in (("teacher", f"teacher, {g.get('teacher_layers', 6)} layers"),
                            ("cut", f"layers cut to {g.get('student_layers', args.layers)}, untrained"),
                            ("general", f"general student, {g.get('student_layers', args.layers)} layers")):
            lines.append(f"| {label} | {s[name]:.4f} | {100 * s[name] / s['teacher']:.1f} % |")
        lines.append("")
    for task, t in result.get("tasks", {}).items():
        ladder = t.get("ladder")
        if not ladder:
            continue
        lines += [f"### {task}: the ladder (`bertflow compress`, full dev, batch 32, best of {ladder['rounds']})",
                  "", *([f"Command: `{t['command']}`. Machine: {t['machine']}.", ""] if "command" in t else []),
                  *([f"Teacher trained here: {t['teacher_train_s'] / 60:.0f} min.", ""] if "teacher_train_s" in t
                    else []),
                  "| rung | precision | layers | docs/s | x teacher | score | loss (points) | frontier |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in ladder["rungs"]:
            score = ", ".join(f"{v:.4f}" for v in r["scores"].values())
            mark = " **(chosen)**" if r["name"] == ladder["chosen"] else ""
            lines.append(f"| {r['name']}{mark} | {r['precision']} | {r['layers']} | {r['docs_per_s']:.0f} | "
                         f"x{r['speedup']:.2f} | {score} | {r['loss_points']:+.2f} | "
                         f"{'yes' if r['frontier'] else ''} |")
        train_s = t.get("train_s", {})
        if train_s:
            lines.append("")
            lines.append("Task distillation time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in
                                                                  train_s.items()))
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bertflow_compress_bench"))
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--tasks", default="ner")
    parser.add_argument("--teacher", action="append", default=[], metavar="TASK=DIR")
    parser.add_argument("--teacher-steps", action="append", default=[], metavar="TASK=STEPS",
                        help="no --teacher for TASK: train one here from the task project's config on the whole "
                        "train split (SST-2 3 epochs: 6315)")
    parser.add_argument("--students", default="own,general",
                        help="task students to distil: own (the teacher's own layers), general (from the general "
                        "student; needs the general stage)")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--gd-steps", type=int, default=1500)
    parser.add_argument("--gd-lr", type=float, default=1e-4)
    parser.add_argument("--gd-from-teacher", action="store_true",
                        help="also distil the fine-tuned task teacher's encoder on the raw text, and a student from it")
    parser.add_argument("--steps", type=int, default=1350)
    parser.add_argument("--max-loss", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", default="general,stsb,tasks")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    start = time.perf_counter()
    general = None
    if "general" in args.students.split(",") or "general" in stages:
        general = stage_general(args, args.workdir, result)
        RESULTS.write_text(json.dumps(result, indent=2))
    if "stsb" in stages and general is not None:
        stage_stsb(args, general, result)
        RESULTS.write_text(json.dumps(result, indent=2))
    if "tasks" in stages:
        for task in args.tasks.split(","):
            stage_task(args, task, general, args.workdir, result)
            RESULTS.write_text(json.dumps(result, indent=2))
    result["seconds"] = time.perf_counter() - start
    RESULTS.write_text(json.dumps(result, indent=2))
    text = report_md(args, result)
    print(text)
    if not args.no_write:
        write_section("compress", text)


if __name__ == "__main__":
    main()
