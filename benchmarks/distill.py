"""Distillation: a 6-layer minilm-l6 teacher (SST-2 textcat, CoNLL-2003 NER,
each trained with its project's recipe), its K-layer student distilled by
``bertflow distill`` on the unlabeled train texts, and (b) the same student
(same layers, same initialisation, same steps and schedule) trained on the
gold labels alone. Each is scored on the full dev split and timed on it at
batch 32 on this machine (fp32, and int8 stacked on the student).

    python benchmarks/distill.py --tasks textcat,ner --teacher-steps 6315,1350 --steps 2000,1350 \
        --layers 3 --temperature 1 --teacher-precision bf16 --teacher textcat=DIR

``--teacher textcat=DIR`` takes a teacher trained before (here the 3-epoch
SST-2 model of ``textcat_sst2.py --steps 6315``) instead of training one.
Trained pipelines stay in --workdir, so a second run with the same settings
only measures (``--reuse``). Writes benchmarks/results/distill.json and the
``distill`` section of benchmarks/BENCHMARKS.md.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SST2_LABELS = {"0": "NEGATIVE", "1": "POSITIVE"}


def sst2_rows(path: Path):
    with open(path, encoding="utf8") as f:
        return [(text, SST2_LABELS[label]) for text, label in list(csv.reader(f, delimiter="\t",
                                                                             quoting=csv.QUOTE_NONE))[1:]]


def prepare(task: str, data: Path, work: Path) -> dict:
    """train.spacy, dev.spacy and the unlabeled train texts for ``task``."""
    import spacy
    from spacy.tokens import DocBin

    work.mkdir(parents=True, exist_ok=True)
    # the NER student reads train.spacy for its gold tokenization (bertflow distill ignores the entities)
    files = {"train": work / "train.spacy", "dev": work / "dev.spacy",
             "texts": work / ("texts.txt" if task == "textcat" else "train.spacy")}
    if all(p.exists() for p in files.values()):
        return files
    nlp = spacy.blank("en")
    if task == "textcat":
        for split in ("train", "dev"):
            docs = []
            for text, label in sst2_rows(data / "sst2" / f"{split}.tsv"):
                doc = nlp.make_doc(text)
                doc.cats = {name: float(name == label) for name in SST2_LABELS.values()}
                docs.append(doc)
            DocBin(docs=docs, store_user_data=True).to_disk(files[split])
        files["texts"].write_text("".join(t.replace("\n", " ") + "\n" for t, _ in
                                          sst2_rows(data / "sst2" / "train.tsv")), encoding="utf8")
    else:
        from ner_conll import read_conll, write_docbins

        write_docbins(work, read_conll(data / "conll2003" / "train.txt"), read_conll(data / "conll2003" / "dev.txt"))
    return files


def project_lr(task: str) -> float:
    """The task project's own peak learning rate (``vars.lr`` in its project.yml)."""
    import srsly

    return float(srsly.read_yaml(ROOT / "projects" / task / "project.yml")["vars"]["lr"])


def train_teacher(task: str, files: dict, out: Path, steps: int, lr: float, args) -> float:
    config = ROOT / "projects" / task / "configs" / f"{task}.cfg"
    targs = argparse.Namespace(encoder=args.encoder, steps=steps, seed=args.seed, lr=lr,
                               warmup=0.1, batch=32, gpu_id=-1)
    overrides = {"paths.train": str(files["train"]), "paths.dev": str(files["dev"])}
    return spacy_train_timed(config, out, targs, overrides)


def score(nlp, task: str, examples, batch: int = 32) -> float:
    """The dev metric (accuracy or entity F1) of ``nlp`` at ``batch``."""
    from spacy.training import Example

    docs = list(nlp.pipe((eg.predicted.copy() for eg in examples), batch_size=batch))
    if task == "textcat":
        gold = [max(eg.reference.cats, key=eg.reference.cats.get) for eg in examples]
        pred = [max(d.cats, key=d.cats.get) for d in docs]
        return sum(g == p for g, p in zip(gold, pred)) / len(gold)
    return nlp.get_pipe("ner").score([Example(d, eg.reference) for d, eg in zip(docs, examples)])["ents_f"]


def interleaved_speed(pipelines: dict, examples, batch: int = 32, rounds: int = 5) -> dict:
    """docs/s of each pipeline over ``examples`` at ``batch``: the best of
    ``rounds`` passes, the pipelines taking turns within each round, so a slow
    spell of the machine falls on all of them alike rather than on whichever
    was measured then (the ratios are what the targets are about)."""
    best = dict.fromkeys(pipelines, 0.0)
    for _ in range(rounds):
        for name, nlp in pipelines.items():
            start = time.perf_counter()
            n = sum(1 for _ in nlp.pipe((eg.predicted.copy() for eg in examples), batch_size=batch))
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def weights_mb(path: Path) -> float:
    return (path / "encoder" / "model").stat().st_size / 1e6


def run_task(task: str, teacher_steps: int, teacher_lr: float, steps: int, args) -> dict:
    import spacy

    import bertflow
    from bertflow.data.corpus import create_corpus_reader

    work = args.workdir / task
    files = prepare(task, args.data, work)
    result = {"task": task, "teacher_steps": teacher_steps, "teacher_lr": teacher_lr, "steps": steps,
              "layers": args.layers, "temperature": args.temperature, "lr": args.lr}
    given = dict(item.split("=", 1) for item in args.teacher)
    teacher_dir = Path(given[task]) if task in given else work / f"teacher_s{teacher_steps}" / "model-last"
    result["teacher_dir"] = str(teacher_dir) if task in given else None
    # training figures of the pipelines in --workdir, kept so that a --reuse run still reports them
    log_path = work / "trained.json"
    trained = json.loads(log_path.read_text()) if log_path.exists() else {}
    if task not in given and not (args.reuse and teacher_dir.exists()):
        trained[str(teacher_dir)] = {"teacher_train_s": train_teacher(task, files, teacher_dir.parent, teacher_steps,
                                                                      teacher_lr, args)}
        log_path.write_text(json.dumps(trained, indent=2))
    result.update(trained.get(str(teacher_dir), {}))
    runs = {"distilled": dict(soft_weight=1.0, gold_weight=0.0, data=files["texts"]),
            "gold": dict(soft_weight=0.0, gold_weight=1.0, data=files["train"])}
    if args.mix:  # the teacher's targets and the gold labels together, on the labeled train set
        runs["mixed"] = dict(soft_weight=1.0, gold_weight=args.mix, data=files["train"])
    if args.augment:  # the teacher's targets on the train texts and word-swapped variants of them
        runs["augmented"] = dict(soft_weight=1.0, gold_weight=0.0, data=files["texts"], augment=args.augment)
    if args.hidden:  # the teacher's targets and a cosine loss on the hidden states (layer to layer with "all")
        runs["hidden"] = dict(soft_weight=1.0, gold_weight=0.0, data=files["texts"], hidden_weight=args.hidden,
                              hidden_layers=args.hidden_layers)
    tag = f"l{args.layers}_s{steps}_t{args.temperature:g}"
    variant = {"augmented": f"augmented{args.augment}_p{args.augment_prob:g}",
               "hidden": f"hidden_{args.hidden_layers}{args.hidden:g}"}
    students = {name: work / f"student_{variant.get(name, name)}_{tag}" for name in runs}
    for name, how in runs.items():
        out = students[name]
        if args.reuse and out.exists():
            continue
        _, report = bertflow.distill(str(teacher_dir), out, how["data"], student_layers=args.layers, steps=steps,
                                     batch_size=32, temperature=args.temperature, learn_rate=args.lr,
                                     soft_weight=how["soft_weight"], gold_weight=how["gold_weight"],
                                     augment=how.get("augment", 0), augment_prob=args.augment_prob,
                                     hidden_weight=how.get("hidden_weight", 0.0),
                                     hidden_layers=how.get("hidden_layers", "last"),
                                     teacher_precision=args.teacher_precision or None,
                                     seed=args.seed, force=True, progress=args.progress)
        trained[str(out)] = {f"{name}_train_s": report.seconds, f"{name}_loss": [report.first_losses, report.losses]}
        log_path.write_text(json.dumps(trained, indent=2))
    for out in students.values():
        result.update(trained.get(str(out), {}))
    meta = json.loads((students["distilled"] / "meta.json").read_text())
    result["student_layers_of_teacher"] = meta["bertflow_distilled"]["layers"]
    systems = {"teacher": (teacher_dir, {}), "distilled": (students["distilled"], {}),
               "gold": (students["gold"], {}),
               **{name: (students[name], {}) for name in ("mixed", "augmented", "hidden") if name in students},
               "distilled_int8": (students["distilled"],
                                  {"components.encoder.model.precision": "int8"}),
               "teacher_int8": (teacher_dir, {"components.encoder.model.precision": "int8"})}
    pipelines = {}
    for name, (path, config) in systems.items():
        nlp = pipelines[name] = spacy.load(path, config=config)
        examples = list(create_corpus_reader(files["dev"])(nlp))
        if args.dev_limit:
            examples = examples[: args.dev_limit]
        result[name] = {"metric": score(nlp, task, examples), "weights_mb": weights_mb(path)}
        print(json.dumps({task: {name: result[name]}}), flush=True)
    for name, docs_per_s in interleaved_speed(pipelines, examples).items():
        result[name]["docs_per_s"] = docs_per_s
    return result


def command(args) -> str:
    parts = [f"python benchmarks/distill.py --tasks {args.tasks} --teacher-steps {args.teacher_steps}",
             *([f"--teacher-lr {args.teacher_lr}"] if args.teacher_lr else []),
             *(f"--teacher {t}" for t in args.teacher),
             f"--steps {args.steps} --layers {args.layers} --temperature {args.temperature:g}"]
    if args.mix:
        parts.append(f"--mix {args.mix:g}")
    if args.augment:
        parts.append(f"--augment {args.augment} --augment-prob {args.augment_prob:g}")
    if args.hidden:
        parts.append(f"--hidden {args.hidden:g} --hidden-layers {args.hidden_layers}")
    if args.teacher_precision:
        parts.append(f"--teacher-precision {args.teacher_precision}")
    return " ".join(parts)


def teacher_line(res) -> str:
    if res.get("teacher_dir"):
        return f"{res['task']}: `{res['teacher_dir']}` (a pipeline trained before this run)"
    return f"{res['task']}: the project's config, {res['teacher_steps']} steps × 32 at lr {res['teacher_lr']:g}"


def seconds(res, name: str) -> str:
    value = res.get(f"{name}_train_s")
    return f"{value:.0f} s" if value is not None else "before this run"


def report(args, results) -> str:
    metric = {"textcat": "accuracy", "ner": "entity F1"}
    dev = {"textcat": "SST-2 dev, 872 sentences", "ner": "CoNLL-2003 dev, 3,250 sentences"}
    lines = [
        "## Distillation: 3-layer students of the minilm-l6 textcat and NER pipelines (bertflow distill)", "",
        f"`{command(args)}`", "",
        f"Teachers (minilm-l6, 6 layers): {'; '.join(teacher_line(r) for r in results)}. Student: teacher "
        f"layers {results[0].get('student_layers_of_teacher')} + embeddings + the teacher's heads, trained for "
        f"the student steps × 32 at lr {args.lr:g} (10% warm-up, linear decay; bf16 autocast where the "
        f"teacher's config sets mixed_precision): **distilled** on the unlabeled train texts "
        f"(T = {args.temperature:g}; the teacher's encoder in {args.teacher_precision or 'fp32'}; NER reads the "
        f"train .spacy for its tokens, entities ignored), or **(b) gold only**: the same student, same steps, "
        f"on the gold labels. docs/s: `nlp.pipe` over the dev split at batch 32, best of 5 passes taken in "
        f"turns (each round times every pipeline once), this machine's 2 cores. Machine: {machine()}.", "",
        "| task (dev) | system | layers | dev score | Δ vs teacher | docs/s (batch 32) | × teacher | encoder MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"teacher": "teacher", "distilled": "student, distilled", "gold": "(b) student, gold labels only",
             "mixed": f"student, distilled + gold (weight {args.mix:g})",
             "augmented": f"student, distilled on the texts + {args.augment} word-swapped variants of each "
                          f"(p {args.augment_prob:g})",
             "hidden": f"student, distilled + hidden-state cosine loss ({args.hidden_layers} layers, weight "
                       f"{args.hidden:g})",
             "distilled_int8": "student, distilled + int8", "teacher_int8": "teacher + int8"}
    for res in results:
        teacher = res["teacher"]
        for key, label in names.items():
            if key not in res:
                continue
            row = res[key]
            layers = 6 if key.startswith("teacher") else args.layers
            lines.append(f"| {res['task']} ({dev[res['task']]}, {metric[res['task']]}) | {label} | {layers} | "
                         f"{row['metric']:.4f} | {100 * (row['metric'] - teacher['metric']):+.2f} | "
                         f"{row['docs_per_s']:.0f} | ×{row['docs_per_s'] / teacher['docs_per_s']:.2f} | "
                         f"{row['weights_mb']:.1f} |")
    lines.append("")
    for res in results:
        gap = 100 * (res["teacher"]["metric"] - res["distilled"]["metric"])
        lead = 100 * (res["distilled"]["metric"] - res["gold"]["metric"])
        speed = res["distilled"]["docs_per_s"] / res["teacher"]["docs_per_s"]
        lines.append(f"- {res['task']}: student ×{speed:.2f} the teacher's docs/s (target ≥ ×1.8), "
                     f"{gap:.2f} points below the teacher (target ≤ 1.5), {lead:+.2f} points vs (b) "
                     f"(target > 0). Training: teacher {seconds(res, 'teacher')}, distillation "
                     f"{seconds(res, 'distilled')}, (b) {seconds(res, 'gold')}.")
        if "mixed" in res:
            lines.append(f"- {res['task']}, distilled + gold: "
                         f"{100 * (res['teacher']['metric'] - res['mixed']['metric']):.2f} points below the teacher, "
                         f"{100 * (res['mixed']['metric'] - res['gold']['metric']):+.2f} vs (b); training "
                         f"{seconds(res, 'mixed')}.")
        if "augmented" in res:
            lines.append(f"- {res['task']}, distilled with {args.augment} augmented variants per text: "
                         f"{100 * (res['teacher']['metric'] - res['augmented']['metric']):.2f} points below the "
                         f"teacher, {100 * (res['augmented']['metric'] - res['gold']['metric']):+.2f} vs (b); "
                         f"training {seconds(res, 'augmented')}.")
        if "hidden" in res:
            lines.append(f"- {res['task']}, distilled with the hidden-state loss ({args.hidden_layers} layers): "
                         f"{100 * (res['teacher']['metric'] - res['hidden']['metric']):.2f} points below the "
                         f"teacher, {100 * (res['hidden']['metric'] - res['gold']['metric']):+.2f} vs (b); "
                         f"training {seconds(res, 'hidden')}.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bertflow_distill_bench"))
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--tasks", default="textcat,ner")
    parser.add_argument("--teacher-steps", default="400,450")
    parser.add_argument("--steps", default="400,450")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--teacher-lr", default="", help="per task, as --tasks (default: each project's rate)")
    parser.add_argument("--teacher", action="append", default=[], metavar="TASK=DIR",
                        help="a trained teacher pipeline for TASK instead of training one")
    parser.add_argument("--teacher-precision", default="", help="run the teacher's encoder in bf16 or int8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-limit", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep pipelines already trained in --workdir")
    parser.add_argument("--mix", type=float, default=0.0,
                        help="also train a student on the teacher's targets plus the gold labels at this weight")
    parser.add_argument("--augment", type=int, default=0,
                        help="also distil a student on the train texts plus N word-swapped variants of each")
    parser.add_argument("--augment-prob", type=float, default=0.4, help="chance each word of a variant is swapped")
    parser.add_argument("--hidden", type=float, default=0.0,
                        help="also a student with the hidden-state cosine loss at this weight")
    parser.add_argument("--hidden-layers", default="all", choices=("last", "all"),
                        help="that loss on the last hidden states or layer to layer")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    teacher_steps = [int(s) for s in args.teacher_steps.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    teacher_lr = [float(s) for s in args.teacher_lr.split(",")] if args.teacher_lr else [project_lr(t) for t in tasks]
    results = [run_task(task, teacher_steps[i], teacher_lr[i], steps[i], args) for i, task in enumerate(tasks)]
    out = ROOT / "benchmarks" / "results" / "distill.json"
    if not args.no_write:
        out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    body = report(args, results)
    if not args.no_write:
        write_section("distill", body)
    print(body)


if __name__ == "__main__":
    main()
