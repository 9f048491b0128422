"""NER on entities it has not seen: CoNLL-2003 dev and its stress variants
(``bertflow stress ner``: unseen names, cross-type swaps, typos, longer
mentions, lower case, all built from the dev set itself), three systems
trained in one run at the same steps, batch, schedule and data:

  (1) bertflow: encoder + bertflow_ner with projects/ner/configs/ner.cfg;
  (2) the same with the mention augmenter in [corpora.train.augmenter];
  (3) a plain Hugging Face AutoModelForTokenClassification loop.

Every system is scored by the same exact-span F1 on every variant.

    python benchmarks/ner_robust.py --data ../shared/data/conll2003 --steps 450

``--augmenter`` is an augmenter block as JSON (default: the NER project's
recipe, ``bertflow_ner.mention_mix.v1``); given more than once, each is an
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

DEFAULT_AUGMENTER = {"@augmenters": "bertflow_ner.mention_mix.v1", "prob": 0.5, "rate": 0.5, "keep": 1.0,
                     "seed": 0, "swap": 1.0, "unseen": 1.0, "typos": 1.0, "longer": 0.0}
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


def recipe_label() -> str:
    """The row label of the augmentation the NER project's config ships with."""
    from thinc.api import Config

    config = Config().from_disk(ROOT / "projects" / "ner" / "configs" / "ner.cfg", interpolate=False)
    spec = dict(config["corpora"]["train"]["augmenter"])
    batcher = dict(config["training"]["batcher"])
    grouped = batcher.get("group_attr") == "variant_group"
    return arm_name("bertflow_aug", [spec], [batcher] if grouped else None)


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


def main():
    parser = benchmark_parser(__doc__, "conll2003", batch=32, lr=1e-4)
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--systems", default="bertflow,bertflow_aug,hf")
    parser.add_argument("--augmenter", type=json.loads, action="append")
    parser.add_argument("--batcher", type=json.loads, action="append")
    parser.add_argument("--stress-seed", type=int, default=0)
    args = parser.parse_args()
    specs = args.augmenter or [DEFAULT_AUGMENTER]

    train = read_conll(args.data / "train.txt", args.train_limit)
    dev = read_conll(args.data / "dev.txt", args.dev_limit)
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_docbins(workdir, train, dev)
        variants = variant_rows(workdir / "dev.spacy", args.stress_seed)
        for system in filter(None, args.systems.split(",")):  # --systems '': redraw the table from the results
            if system == "hf":
                predict, train_s = train_hf(args, train)
            else:
                config = augmented_config(workdir, specs[arm_index(system)], system,
                                          arm_batcher(system, args.batcher)) \
                    if system.startswith("bertflow_aug") else spacy_config(workdir, False)
                nlp, train_s = train_spacy(args, config, workdir, system, system.startswith("bertflow_aug"))
                predict = lambda rows, nlp=nlp: predict_spacy(nlp, rows, args.eval_batch)[0]  # noqa: E731
            scores[system] = {name: prf(gold, predict(rows))["ALL"] for name, (rows, gold) in variants.items()}
            scores[system]["train_s"] = train_s
            print(json.dumps({system: scores[system]}), flush=True)

    names = list(variants)
    flags = "".join(f" --augmenter '{json.dumps(spec)}'" for spec in args.augmenter or [])
    flags += "".join(f" --batcher '{json.dumps(batcher)}'" for batcher in args.batcher or [])
    command = (f"python benchmarks/ner_robust.py --steps {args.steps}"
               f"{' --systems ' + args.systems if args.systems != 'bertflow,bertflow_aug,hf' else ''}{flags}")
    # Every system's latest figures, kept across invocations (same data, seed and steps), so an arm
    # added later is compared with the plain and HF rows without training them again.
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.no_write else {}
    kept = {label: row for label, row in kept.items() if row["steps"] == args.steps and row["seed"] == args.seed}
    for system, result in scores.items():
        kept[arm_name(system, specs, args.batcher)] = {"system": system, "scores": result, "command": command,
                                         "steps": args.steps, "seed": args.seed, "machine": machine()}
    order = sorted(kept, key=lambda label: ("hf" == kept[label]["system"], kept[label]["system"] != "bertflow"))
    commands = list(dict.fromkeys(kept[label]["command"] for label in order))
    recipe = recipe_label()
    rows = "\n".join(f"| {label}{' — **the NER recipe**' if label == recipe else ''} | "
                     + " | ".join(f"{kept[label]['scores'][v]:.4f}" for v in names)
                     + f" | {commands.index(kept[label]['command']) + 1} |"
                     for label in order)
    plain = next((kept[label]["scores"] for label in order if kept[label]["system"] == "bertflow"), None)
    summary = ""
    for label in (lab for lab in order if kept[lab]["system"].startswith("bertflow_aug") and plain):
        aug = kept[label]["scores"]
        gap = plain["clean"] - plain["unseen"]
        closed = f"{(aug['unseen'] - plain['unseen']) / gap:.1%}" if gap > 0 else "n/a"
        moves = ", ".join(f"{v} {100 * (aug[v] - plain[v]):+.2f}" for v in names)
        summary += (f"\n{label} vs plain bertflow (points): {moves}; the clean → unseen gap of "
                    f"plain bertflow ({100 * gap:.2f} points) closed by **{closed}**.\n")
    runs = "\n".join(f"{i + 1}. `{c}`" for i, c in enumerate(commands))
    machines = sorted({kept[label]["machine"].rsplit(";", 1)[0] for label in order})
    body = f"""## NER robustness: CoNLL-2003 dev and its stress variants

— {args.encoder}, {args.steps} steps of batch {args.batch}, lr {args.lr:g}, {args.warmup:.0%} warm-up then linear decay, seed {args.seed},
{len(train):,} train sentences; variants of the {len(dev):,} dev sentences from `bertflow stress ner` (seed {args.stress_seed}):
`unseen` every mention generated pseudo-words, `cross_type` another type's mention under the original label, `typos` one
typo per mention, `longer` one more token per mention, `lower` the text lower-cased (the same as clean here: the encoder is
uncased). Exact-span entity F1, the same code for every system. Rows come from these invocations (same data, seed and
steps; training is seeded), the last column says which:

{runs}

Machine: {'; '.join(machines)}.

| system | {" | ".join(names)} | run |
|---|{"---|" * len(names)}---|
{rows}
{summary}"""
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(kept, indent=1))
    if not args.no_write:
        write_section("ner-robust", body)
    print(body)


if __name__ == "__main__":
    main()
