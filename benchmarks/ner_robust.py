"""NER on entities it has not seen: CoNLL-2003 dev and its stress variants
(``bertflow stress ner``: unseen names, cross-type swaps, typos, longer
mentions, lower case, all built from the dev set itself), three systems
trained in one run at the same steps, batch, schedule and data:

  (1) bertflow: encoder + bertflow_ner with projects/ner/configs/ner.cfg,
      its augmenter switched off (prob 0);
  (2) the same config as shipped, its mention augmenter on (or the
      ``--augmenter`` blocks given);
  (3) a plain Hugging Face AutoModelForTokenClassification loop.

Every system is scored by the same exact-span F1 on every variant.

    python benchmarks/ner_robust.py --data ../shared/data/conll2003 --steps 450 --seeds 0,1,2

``--seeds`` trains every system once per seed; the table shows each row's mean
over the seeds it has, and the summary the gap closed per seed.

``--augmenter`` is an augmenter block as JSON (default: the NER project's
recipe, its config unchanged); given more than once, each is an
arm of its own (``bertflow_aug``, ``bertflow_aug2``, ... in ``--systems``).
``--batcher`` (JSON, or ``null`` for the recipe's) replaces the
``[training.batcher]`` block of the arm at the same position, e.g.
``{"@batchers": "bertflow.batch_by_group.v1", "size": 32, "group_attr":
"variant_group"}``: 32 originals a step, their variants riding along.
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, machine, write_section  # noqa: E402
from ner_conll import predict_spacy, prf, read_conll, spacy_config, train_hf, train_spacy, write_docbins  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "ner_robust.json"
NAMES = {"bertflow": "bertflow (encoder + bertflow_ner), no augmentation",
         "hf": "HF AutoModelForTokenClassification, plain torch loop"}


def arm_index(system: str) -> int:
    """0-based index of an augmented arm's ``--augmenter`` (bertflow_aug: 0, bertflow_aug2: 1, ...)."""
    return int(system[len("bertflow_aug"):] or 1) - 1


def arm_name(system: str, specs, batchers=()) -> str:
    if not system.startswith("bertflow_aug"):
        return NAMES[system]
    spec = specs[arm_index(system)]
    knobs = ", ".join(f"{k} {v:g}" for k, v in spec.items() if k not in ("@augmenters", "seed"))
    batcher = arm_batcher(system, batchers)
    riding = (f", `{batcher['@batchers']}` by `{batcher.get('group_attr', 'group')}` (size {batcher['size']}: "
              "originals a step, variants ride along)") if batcher else ""
    return f"bertflow + `{spec['@augmenters']}` ({knobs}){riding}"


def arm_batcher(system: str, batchers):
    index = arm_index(system)
    return batchers[index] if batchers and index < len(batchers) else None


def config_block(header: str, spec: dict) -> str:
    """``spec`` as the config block ``header`` (e.g. "[corpora.train.augmenter]")."""
    lines = [header] + [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n\n"


def without_block(text: str, header: str) -> str:
    if header not in text:
        return text
    start = text.index(header)
    end = text.index("\n[", start) + 1
    return text[:start] + text[end:]


def augmented_config(workdir: Path, spec: dict, name: str, batcher=None) -> Path:
    # the recipe's own augmenter block: this arm's replaces it
    text = without_block(spacy_config(workdir, False).read_text(), "[corpora.train.augmenter]")
    at = text.index("[corpora.dev]")
    text = text[:at] + config_block("[corpora.train.augmenter]", spec) + text[at:]
    if batcher:
        text = without_block(text, "[training.batcher]")
        at = text.index("[training.logger]")
        text = text[:at] + config_block("[training.batcher]", batcher) + text[at:]
    path = workdir / f"{name}.cfg"
    path.write_text(text)
    return path


def recipe_blocks():
    """The augmenter block and, where it groups variants with their originals, the batcher block
    that the NER project's config ships with."""
    from thinc.api import Config

    config = Config().from_disk(ROOT / "projects" / "ner" / "configs" / "ner.cfg", interpolate=False)
    batcher = dict(config["training"]["batcher"])
    return dict(config["corpora"]["train"]["augmenter"]), (batcher if batcher.get("group_attr") else None)


def recipe_label() -> str:
    """The row label of the augmentation the NER project's config ships with."""
    spec, batcher = recipe_blocks()
    return arm_name("bertflow_aug", [spec], [batcher] if batcher else None)


def variant_rows(dev_spacy: Path, seed: int):
    """{variant: (rows of (words, None), gold spans)} from bertflow stress's variants."""
    import spacy
    from spacy.tokens import DocBin

    from bertflow_ner.stress import stress_variants

    docs = list(DocBin().from_disk(dev_spacy).get_docs(spacy.blank("en").vocab))
    out = {}
    for name, variant in stress_variants(docs, seed).items():
        rows = [([t.text for t in d], None) for d in variant]
        gold = [[(e.start, e.end, e.label_) for e in d.ents] for d in variant]
        out[name] = (rows, gold)
    return out


def seeded(spec: dict, seed: int) -> dict:
    """The augmenter block with its own seed following the run's."""
    return {**spec, "seed": seed} if "seed" in spec else spec


def migrate(kept: dict) -> dict:
    """Rows written one seed per label ({"scores", "seed", ...}) as {"by_seed": {seed: ...}}."""
    for row in kept.values():
        if "scores" in row:
            seed = str(row.pop("seed"))
            row["by_seed"] = {seed: {k: row.pop(k) for k in ("scores", "command", "machine")}}
    return kept


def mean_scores(runs: dict, seeds) -> dict:
    """Each variant's mean over ``seeds`` (keys of ``runs``)."""
    names = runs[seeds[0]]["scores"]
    return {v: sum(runs[s]["scores"][v] for s in seeds) / len(seeds) for v in names}


def gap_closed(plain: dict, aug: dict) -> float:
    """The share of plain training's clean → unseen gap that ``aug`` closes."""
    gap = plain["clean"] - plain["unseen"]
    return (aug["unseen"] - plain["unseen"]) / gap if gap > 0 else float("nan")


def main():
    parser = benchmark_parser(__doc__, "conll2003", batch=32, lr=1e-4)
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--systems", default="bertflow,bertflow_aug,hf")
    parser.add_argument("--augmenter", type=json.loads, action="append")
    parser.add_argument("--batcher", type=json.loads, action="append")
    parser.add_argument("--stress-seed", type=int, default=0)
    parser.add_argument("--seeds", default=None,
                        help="comma-separated training seeds, each a run of every system (default: --seed); "
                             "the table shows each row's mean over its seeds")
    args = parser.parse_args()
    if args.augmenter:
        specs, batchers = args.augmenter, args.batcher
    else:  # the recipe itself: its config trains unchanged, the seed following --seed(s)
        spec, batcher = recipe_blocks()
        specs, batchers = [spec], ([batcher] if batcher else None)
    seeds = [int(s) for s in (args.seeds or str(args.seed)).split(",")]

    train = read_conll(args.data / "train.txt", args.train_limit)
    dev = read_conll(args.data / "dev.txt", args.dev_limit)
    scores = {}  # {(system, seed): {variant: F1, "train_s": seconds}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_docbins(workdir, train, dev)
        variants = variant_rows(workdir / "dev.spacy", args.stress_seed)
        for seed in seeds:
            args.seed = seed
            for system in filter(None, args.systems.split(",")):  # --systems '': redraw the table
                if system == "hf":
                    predict, train_s = train_hf(args, train)
                else:
                    config = augmented_config(workdir, seeded(specs[arm_index(system)], seed), system,
                                              arm_batcher(system, batchers)) \
                        if system.startswith("bertflow_aug") and args.augmenter else spacy_config(workdir, False)
                    nlp, train_s = train_spacy(args, config, workdir, f"{system}-{seed}",
                                               system.startswith("bertflow_aug"))
                    predict = lambda rows, nlp=nlp: predict_spacy(nlp, rows, args.eval_batch)[0]  # noqa: E731
                result = {name: prf(gold, predict(rows))["ALL"] for name, (rows, gold) in variants.items()}
                scores[system, seed] = {**result, "train_s": train_s}
                print(json.dumps({system: scores[system, seed], "seed": seed}), flush=True)

    names = list(variants)
    flags = "".join(f" --augmenter '{json.dumps(spec)}'" for spec in args.augmenter or [])
    flags += "".join(f" --batcher '{json.dumps(batcher)}'" for batcher in args.batcher or [])
    command = (f"python benchmarks/ner_robust.py --steps {args.steps}"
               f"{' --systems ' + args.systems if args.systems != 'bertflow,bertflow_aug,hf' else ''}"
               f"{' --seeds ' + args.seeds if args.seeds else ''}{flags}")
    # Every system's latest figures per seed, kept across invocations (same data and steps), so an
    # arm or a seed added later is compared with the other rows without training them again.
    kept = migrate(json.loads(RESULTS.read_text())) if RESULTS.exists() and not args.no_write else {}
    kept = {label: row for label, row in kept.items() if row["steps"] == args.steps}
    for (system, seed), result in scores.items():
        row = kept.setdefault(arm_name(system, specs, batchers),
                              {"system": system, "steps": args.steps, "by_seed": {}})
        row["by_seed"][str(seed)] = {"scores": result, "command": command, "machine": machine()}
    order = sorted(kept, key=lambda label: ("hf" == kept[label]["system"], kept[label]["system"] != "bertflow",
                                            -len(kept[label]["by_seed"])))
    runs_of = {label: sorted(kept[label]["by_seed"], key=int) for label in order}
    commands = list(dict.fromkeys(run["command"] for label in order for run in kept[label]["by_seed"].values()))
    recipe = recipe_label()

    def row_line(label):
        runs = kept[label]["by_seed"]
        mean = mean_scores(runs, runs_of[label])
        which = sorted({commands.index(runs[s]["command"]) + 1 for s in runs_of[label]})
        return (f"| {label}{' — **the NER recipe**' if label == recipe else ''} | "
                + " | ".join(f"{mean[v]:.4f}" for v in names)
                + f" | {','.join(runs_of[label])} | {','.join(map(str, which))} |")

    rows = "\n".join(row_line(label) for label in order)
    plain_label = next((label for label in order if kept[label]["system"] == "bertflow"), None)
    summary = ""
    for label in (lab for lab in order if kept[lab]["system"].startswith("bertflow_aug") and plain_label):
        common = [s for s in runs_of[label] if s in kept[plain_label]["by_seed"]]
        if not common:
            continue
        plain_runs, aug_runs = kept[plain_label]["by_seed"], kept[label]["by_seed"]
        plain, aug = mean_scores(plain_runs, common), mean_scores(aug_runs, common)
        moves = ", ".join(f"{v} {100 * (aug[v] - plain[v]):+.2f}" for v in names)
        per_seed = "" if len(common) < 2 else "; per seed: " + ", ".join(
            f"{s}: {gap_closed(plain_runs[s]['scores'], aug_runs[s]['scores']):.1%} at clean "
            f"{100 * (aug_runs[s]['scores']['clean'] - plain_runs[s]['scores']['clean']):+.2f}" for s in common)
        summary += (f"\n{label} vs plain bertflow, seed{'s' if len(common) > 1 else ''} {','.join(common)} "
                    f"(points): {moves}; the clean → unseen gap of plain bertflow "
                    f"({100 * (plain['clean'] - plain['unseen']):.2f} points) closed by "
                    f"**{gap_closed(plain, aug):.1%}**{per_seed}.\n")
    runs = "\n".join(f"{i + 1}. `{c}`" for i, c in enumerate(commands))
    machines = sorted({run["machine"].rsplit(";", 1)[0] for label in order for run in kept[label]["by_seed"].values()})
    body = f"""## NER robustness: CoNLL-2003 dev and its stress variants

— {args.encoder}, {args.steps} steps of batch {args.batch}, lr {args.lr:g}, {args.warmup:.0%} warm-up then linear decay,
{len(train):,} train sentences; variants of the {len(dev):,} dev sentences from `bertflow stress ner` (seed {args.stress_seed}):
`unseen` every mention generated pseudo-words, `cross_type` another type's mention under the original label, `typos` one
typo per mention, `longer` one more token per mention, `lower` the text lower-cased (the same as clean here: the encoder is
uncased). Exact-span entity F1, the same code for every system. Each row is the mean over the training seeds in its
`seeds` column (a seed fixes initialisation, batch order and the augmenter's draws); rows come from these invocations
(same data and steps), the last column says which:

{runs}

Machine: {'; '.join(machines)}.

| system | {" | ".join(names)} | seeds | run |
|---|{"---|" * len(names)}---|---|
{rows}
{summary}"""
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(kept, indent=1))
        write_section("ner-robust", body)
    print(body)


if __name__ == "__main__":
    main()
