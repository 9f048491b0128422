"""Multitask vs single-task: the four heads trained together on one encoder
against each head trained alone on its own encoder, at the same number of
examples seen per task, in one run on one machine.

Each task's training examples are a fixed draw of ``--examples`` from its full
train split in ../shared/data (SST-2, CoNLL-2003, SQuAD v1.1 questions whose
context is at most ``--max-context-words`` words, STS-B pairs); every run sees
each of its examples once:

- multitask: projects/multitask's config, the four corpora mixed uniformly
  (``bertflow.MixedCorpus.v1``), 4 x examples / batch steps;
- single: the same config and settings with the encoder and that one head,
  examples / batch steps.

Scores are on the dev splits (SQuAD: the questions of the first ``--qa-dev``
dev contexts of at most ``--max-context-words`` words, as the demo's); the
untrained encoder's similarity (zero-shot) is scored too. Wall time is the
training steps only. Seeds vary the heads' initial weights, the order and the
dropout masks; the draw of examples is the same for every seed.

    python benchmarks/multitask.py --data ../shared/data --examples 800 --seeds 0,1

Writes its section of benchmarks/BENCHMARKS.md.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "projects" / "multitask"
TASKS = ("textcat", "ner", "qa", "similarity")
METRIC = {"textcat": "cats_score", "ner": "ents_f", "qa": "qa_f1", "similarity": "sim_spearman"}
LABEL = {"textcat": "SST-2 accuracy", "ner": "CoNLL F1", "qa": "SQuAD F1", "similarity": "STS-B Spearman"}
SAMPLE = ROOT / "tests" / "data" / "multitask_sample"  # a small dev set for spaCy's own evaluations
sys.path.insert(0, str(PROJECT / "scripts"))
import make_samples  # noqa: E402


def prepare(args, work: Path) -> dict:
    """Draw the examples, convert them and the dev sets; returns .spacy paths per task and split."""
    import random

    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = random.Random("multitask-benchmark")
    data = args.data
    make_samples.draw_tsv(data / "sst2" / "train.tsv", raw / "sst2_train.tsv", args.examples, rng)
    make_samples.draw_conll(data / "conll2003" / "train.txt", raw / "conll_train.txt", args.examples, rng)
    make_samples.draw_squad(data / "squad" / "train.json", raw / "squad_train.json", args.examples, rng,
                        args.max_context_words)
    make_samples.draw_tsv(data / "stsb" / "train.tsv", raw / "stsb_train.tsv", args.examples, rng)
    make_samples.draw_squad(data / "squad" / "dev.json", raw / "squad_dev.json", args.qa_dev, random.Random(0),
                        args.max_context_words)
    corpus = work / "corpus"
    jobs = [
        ("textcat", raw / "sst2_train.tsv", "train", ["--label-map", "0=NEGATIVE,1=POSITIVE"]),
        ("textcat", data / "sst2" / "dev.tsv", "dev", ["--label-map", "0=NEGATIVE,1=POSITIVE"]),
        ("textcat", SAMPLE / "sst2_dev.tsv", "small", ["--label-map", "0=NEGATIVE,1=POSITIVE"]),
        ("ner", raw / "conll_train.txt", "train", []),
        ("ner", data / "conll2003" / "dev.txt", "dev", []),
        ("ner", SAMPLE / "conll_dev.txt", "small", []),
        ("qa", raw / "squad_train.json", "train", []),
        ("qa", raw / "squad_dev.json", "dev", []),
        ("qa", SAMPLE / "squad_dev.json", "small", []),
        ("similarity", raw / "stsb_train.tsv", "train", ["--mode", "bi"]),
        ("similarity", data / "stsb" / "dev.tsv", "dev", ["--mode", "bi"]),
        ("similarity", SAMPLE / "stsb_dev.tsv", "small", ["--mode", "bi"]),
    ]
    cmd = [sys.executable, "-m", "bertflow", "convert"]
    paths = {}
    for i, (task, src, split, options) in enumerate(jobs):
        dest = corpus / task / f"{split}.spacy"
        paths[(task, split)] = dest
        cmd += (["--and"] if i else []) + [task, str(src), str(dest), *options]
    subprocess.run(cmd, check=True)
    return paths


def train(args, paths, tasks, seed: int, out: Path) -> float:
    """spacy train on projects/multitask's config with the given tasks' corpora; returns step seconds."""
    overrides = {f"paths.{t}_train": str(paths[(t, "train")]) if t in tasks else None for t in TASKS}
    overrides.update({f"paths.{t}_dev": str(paths[(t, "small")]) for t in TASKS})
    overrides.update({"corpora.train.sampling": "uniform", "corpora.train.epoch_size": args.examples * len(tasks),
                      "nlp.pipeline": ["encoder", *tasks]})
    overrides.update(args.overrides)
    run_args = argparse.Namespace(encoder=args.encoder, steps=args.examples * len(tasks) // args.batch, seed=seed,
                                  lr=args.lr, warmup=args.warmup, batch=args.batch, gpu_id=args.gpu_id)
    return spacy_train_timed(PROJECT / "configs" / "multitask.cfg", out, run_args, overrides)


def score(model_dir: Path, paths, tasks) -> dict:
    import spacy
    from bertflow.training.evaluation import evaluate_nlp, read_examples

    nlp = spacy.load(model_dir)
    result = {}
    for task in tasks:
        heads = evaluate_nlp(nlp, read_examples(nlp, [paths[(task, "dev")]]))["heads"]
        result[task] = heads[task][METRIC[task]]
    if "similarity" in tasks:  # which embedding the zero-shot guard left the head with
        result["similarity_source"] = nlp.get_pipe("similarity").cfg.get("source", "fine_tuned")
    return result


def zero_shot(args, paths) -> float:
    import spacy
    from bertflow.training.evaluation import evaluate_nlp, read_examples

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder",
                 config={"model": {"@architectures": "bertflow.Encoder.v1", "name": args.encoder}})
    nlp.add_pipe("bertflow_similarity", name="similarity")
    nlp.initialize()
    heads = evaluate_nlp(nlp, read_examples(nlp, [paths[("similarity", "dev")]]))["heads"]
    return heads["similarity"]["sim_spearman"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder with sst2/, conll2003/, squad/, stsb/")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--examples", type=int, default=800, help="training examples per task (each seen once)")
    parser.add_argument("--batch", type=int, default=16, help="groups per batch (an STS-B pair is one group)")
    parser.add_argument("--lr", type=float, default=1e-4, help="the encoder's peak learning rate (the project's)")
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--qa-dev", type=int, default=1000, help="SQuAD dev questions scored")
    parser.add_argument("--max-context-words", type=int, default=100)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=JSON",
                        help="a config override for every run, e.g. components.similarity.loss_weight=10")
    parser.add_argument("--no-write", action="store_true", help="print the section, don't write BENCHMARKS.md")
    args = parser.parse_args()
    args.overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.override)}
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = prepare(args, work)
        zero = zero_shot(args, paths)
        runs = {"multitask": [], **{t: [] for t in TASKS}}  # (scores, seconds) per seed
        for seed in seeds:
            out = work / f"multitask-{seed}"
            seconds = train(args, paths, TASKS, seed, out)
            runs["multitask"].append((score(out / "model-last", paths, TASKS), seconds))
            print("multitask", seed, runs["multitask"][-1], flush=True)
            for task in TASKS:
                out = work / f"{task}-{seed}"
                seconds = train(args, paths, (task,), seed, out)
                runs[task].append((score(out / "model-last", paths, (task,)), seconds))
                print(task, seed, runs[task][-1], flush=True)
    body = report(args, seeds, zero, runs)
    print(body)
    if not args.no_write:
        write_section("multitask", body)


def _mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(args, seeds, zero, runs) -> str:
    steps = args.examples * len(TASKS) // args.batch
    lines = [
        "## Multitask vs single-task (projects/multitask)",
        "",
        f"`python benchmarks/multitask.py --examples {args.examples} --seeds {','.join(map(str, seeds))}"
        + "".join(f" --override {k}={json.dumps(v)}" for k, v in args.overrides.items()) + "`",
        f"— {args.encoder}; {args.examples} training examples per task drawn from each full train split, each seen "
        f"once; multitask: {steps} steps of {args.batch} (uniform mixing), single: {steps // len(TASKS)} steps of "
        f"{args.batch} per task; encoder lr {args.lr:g} peak, {args.warmup:.0%} warm-up, linear decay; the "
        f"projects/multitask config (heads' learn_rate_scale and loss_weight as shipped). Dev: SST-2 872, "
        f"CoNLL-2003 3,250, SQuAD the {args.qa_dev} questions drawn as the demo's (contexts of at most "
        f"{args.max_context_words} words), STS-B 1,500. Seeds {', '.join(map(str, seeds))}.",
        f"Machine: {machine()}.",
        "",
        "| task (dev) | single-task (mean ± sd) | multitask (mean ± sd) | multitask − single | zero-shot encoder |",
        "|---|---|---|---|---|",
    ]
    for task in TASKS:
        single = _mean_sd([s[task] for s, _ in runs[task]])
        multi = _mean_sd([s[task] for s, _ in runs["multitask"]])
        zs = f"{zero:.4f}" if task == "similarity" else "—"
        lines.append(f"| {LABEL[task]} | {single[0]:.4f} ± {single[1]:.4f} | {multi[0]:.4f} ± {multi[1]:.4f} "
                     f"| {multi[0] - single[0]:+.4f} | {zs} |")
    multi_s = statistics.mean(s for _, s in runs["multitask"])
    single_s = sum(statistics.mean(s for _, s in runs[t]) for t in TASKS)
    kept = [scores.get("similarity_source") == "zero_shot" for scores, _ in runs["multitask"]]
    kept_single = [scores.get("similarity_source") == "zero_shot" for scores, _ in runs["similarity"]]
    serving = ("one model and one encoder pass per text where the single-task heads need four" if not any(kept)
               else "one model where the single-task heads need four, and one encoder pass per text plus the "
                    "similarity head's pass through its untrained copy in the runs where the guard kept it")
    lines += [
        "",
        f"Training wall time (steps only, mean over seeds): one multitask run {multi_s:.0f} s; the four single "
        f"runs together {single_s:.0f} s. Serving: {serving}.",
        "",
        "Same examples per task, not the same optimizer steps: the multitask run takes four times the steps, "
        "each with about a quarter of a batch per task, so its heads (at 20x the encoder's rate) get four times "
        "the updates; that is part of what multitask buys at this budget. Similarity has no weights of its own: "
        "the other heads' gradients move the shared top layers under it. Its zero-shot guard "
        f"(docs/multitask.md) kept the untrained embedding in {sum(kept)} of {len(kept)} multitask runs and "
        f"{sum(kept_single)} of {len(kept_single)} single-task runs (decided on the 40 pairs of the small dev "
        "set the training evaluates on).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
