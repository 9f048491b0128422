"""CoNLL-2003 NER, three systems side by side in one run, same encoder
(minilm-l6), steps, batch, lr schedule and data:

  (1) bertflow: encoder + bertflow_ner (first-wordpiece tags, constrained BIO
      decoding), spacy train with projects/ner/configs/ner.cfg;
  (2) a plain Hugging Face AutoModelForTokenClassification loop, first-wordpiece
      labels (the others -100);
  (3) spaCy's transition-based `ner` listening to the same shared bertflow
      encoder (bertflow.EncoderListener.v1), spacy train.

All three are scored with the same exact-span (conlleval) P/R/F on the full
dev split; inference speed is words/s over it.

    python benchmarks/ner_conll.py --data ../shared/data/conll2003 --steps 1300

Writes its section of benchmarks/BENCHMARKS.md. With ``--lrs`` it runs the
BERT paper's learning-rate sweep instead: every system at every rate, same
steps, seed and data, dev F1 per rate with each system's best in bold
(its own section):

    python benchmarks/ner_conll.py --lrs 5e-5,4e-5,3e-5,2e-5 --systems bertflow,hf --steps 200
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, hf_finetune, machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SYSTEMS = "bertflow,hf,spacy_ner"

SPACY_NER = """
[components.ner]
factory = "ner"
incorrect_spans_key = null
moves = null
scorer = {"@scorers":"spacy.ner_scorer.v1"}
update_with_oracle_cut_size = 100

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false
nO = null

[components.ner.model.tok2vec]
@architectures = "bertflow.EncoderListener.v1"
grad_factor = 1.0
layers = "last"
n_layers = 4
upstream = "*"

[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def read_conll(path: Path, limit: int = 0):
    sents = []
    for block in path.read_text(encoding="utf8").strip().split("\n\n"):
        rows = [line.split() for line in block.splitlines() if line.strip() and not line.startswith("-DOCSTART-")]
        if rows:
            sents.append(([r[0] for r in rows], [r[-1] for r in rows]))
    return sents[:limit] if limit else sents


def gold_doc(vocab, words, tags):
    """A Doc of ``words`` whose entities are the IOB ``tags`` (every other token marked outside)."""
    from spacy.tokens import Doc, Span

    from bertflow_ner.convert import iob_spans

    doc = Doc(vocab, words=words)
    doc.set_ents([Span(doc, s, e, label=lab) for s, e, lab in iob_spans(tags)], default="outside")
    return doc


def write_docbins(workdir: Path, train, dev) -> None:
    """train.spacy and dev.spacy in workdir, the gold docs spacy train reads."""
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("en").vocab
    for name, rows in (("train", train), ("dev", dev)):
        DocBin(docs=[gold_doc(vocab, words, tags) for words, tags in rows]).to_disk(workdir / f"{name}.spacy")


def spacy_config(workdir: Path, spacy_ner: bool) -> Path:
    text = (ROOT / "projects" / "ner" / "configs" / "ner.cfg").read_text()
    if spacy_ner:
        start, end = text.index("[components.ner]"), text.index("[corpora]")
        text = text[:start] + SPACY_NER.strip() + "\n\n" + text[end:]
    path = workdir / ("spacy_ner.cfg" if spacy_ner else "bertflow_ner.cfg")
    path.write_text(text)
    return path


def train_spacy(args, config: Path, workdir: Path, name: str, augmented: bool = False):
    """Train ``config`` on the written corpora; the NER recipe's mention
    augmentation is switched off unless ``augmented`` (the arm's own block)."""
    import spacy

    overrides = {"paths.train": str(workdir / "train.spacy"), "paths.dev": str(workdir / "dev.spacy")}
    if not augmented and "[corpora.train.augmenter]" in config.read_text():
        overrides["corpora.train.augmenter.prob"] = 0.0
    train_time = spacy_train_timed(config, workdir / name, args, overrides)
    return spacy.load(workdir / name / "model-last"), train_time


def predict_spacy(nlp, dev, eval_batch):
    from spacy.tokens import Doc

    docs = [Doc(nlp.vocab, words=words) for words, _ in dev]
    start = time.perf_counter()
    out = list(nlp.pipe(docs, batch_size=eval_batch))
    elapsed = time.perf_counter() - start
    return [[(e.start, e.end, e.label_) for e in d.ents] for d in out], elapsed


def train_hf(args, train):
    """Fine-tune a plain AutoModelForTokenClassification on ``train``; returns
    (predict, train seconds), predict(rows) -> each row's predicted spans."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertflow.encoder.names import resolve_encoder
    from bertflow_ner.convert import iob_spans

    torch.manual_seed(args.seed)
    path = resolve_encoder(args.encoder)
    labels = sorted({t for _, tags in train for t in tags})
    index = {t: i for i, t in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels))
    device = torch.device("cuda" if args.gpu_id >= 0 else "cpu")
    model.to(device)

    def encode(batch, with_labels=True):
        enc = tok([w for w, _ in batch], is_split_into_words=True, truncation=True, max_length=512,
                  padding=True, return_tensors="pt")
        if not with_labels:
            return enc
        label_ids = []
        for i, (_, tags) in enumerate(batch):
            prev, row = None, []
            for wid in enc.word_ids(i):
                row.append(-100 if wid is None or wid == prev else index[tags[wid]])
                prev = wid
            label_ids.append(row)
        enc["labels"] = torch.tensor(label_ids)
        return enc

    def predict(rows):
        model.eval()
        preds = []
        with torch.inference_mode():
            for i in range(0, len(rows), args.eval_batch):
                batch = rows[i: i + args.eval_batch]
                enc = encode(batch, with_labels=False).to(device)
                logits = model(**enc).logits.argmax(-1).tolist()
                for b, (words, _) in enumerate(batch):
                    tags, prev = ["O"] * len(words), None
                    for pos, wid in enumerate(enc.word_ids(b)):
                        if wid is not None and wid != prev:
                            tags[wid] = labels[logits[b][pos]]
                        prev = wid
                    preds.append(iob_spans(tags))  # conlleval reading: a stray I- opens an entity
        return preds

    return predict, hf_finetune(model, train, encode, args)


def run_hf(args, train, dev):
    predict, train_time = train_hf(args, train)
    start = time.perf_counter()
    preds = predict(dev)
    return preds, train_time, time.perf_counter() - start


def prf(gold_spans, pred_spans):
    """Exact-span P/R/F overall and per type (conlleval)."""
    types = sorted({s[2] for doc in gold_spans for s in doc})
    counts = {t: [0, 0, 0] for t in types + ["ALL"]}
    for gold, pred in zip(gold_spans, pred_spans):
        g, p = set(gold), set(pred)
        for key in ("ALL",):
            counts[key][0] += len(g & p)
            counts[key][1] += len(p - g)
            counts[key][2] += len(g - p)
        for t in types:
            gt, pt = {s for s in g if s[2] == t}, {s for s in p if s[2] == t}
            counts[t][0] += len(gt & pt)
            counts[t][1] += len(pt - gt)
            counts[t][2] += len(gt - pt)
    out = {}
    for key, (tp, fp, fn) in counts.items():
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out[key] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out


def run_system(system, args, train, dev, gold, n_words, workdir):
    if system == "hf":
        preds, train_s, infer_s = run_hf(args, train, dev)
    else:
        nlp, train_s = train_spacy(args, spacy_config(workdir, system == "spacy_ner"), workdir, system)
        preds, infer_s = predict_spacy(nlp, dev, args.eval_batch)
    return {"f1": prf(gold, preds), "train_s": train_s, "words_per_s": n_words / infer_s}


def sweep_section(args, sweep, names, n_train, n_dev) -> str:
    systems = args.systems.split(",")
    best = {s: max(args.lrs, key=lambda lr: sweep[(s, lr)]["f1"]["ALL"]) for s in systems}

    def cell(system, lr):
        f1 = sweep[(system, lr)]["f1"]["ALL"]
        return f"**{f1:.4f}**" if lr == best[system] else f"{f1:.4f}"

    rows = "\n".join(f"| {lr:g} | " + " | ".join(cell(s, lr) for s in systems) + " |" for lr in args.lrs)
    limits = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("train_limit", args.train_limit),
                                                                      ("dev_limit", args.dev_limit)) if v)
    return f"""## NER: CoNLL-2003 learning-rate sweep (the BERT paper's grid)

`python benchmarks/ner_conll.py --lrs {",".join(f"{lr:g}" for lr in args.lrs)} --systems {args.systems} --steps {args.steps}{limits}`
— {args.encoder}, {args.steps} steps of batch {args.batch} ({args.steps * args.batch / n_train:.2f} epochs over {n_train:,} train sentences),
{args.warmup:.0%} linear warm-up then linear decay, seed {args.seed}; dev F1 (exact span) on {n_dev:,} dev sentences; each system's best rate in bold.
Machine: {machine()}.

| lr | {" | ".join(names[s] for s in systems)} |
|---|{"---|" * len(systems)}
{rows}
"""


def main():
    parser = benchmark_parser(__doc__, "conll2003", batch=32, lr=1e-4)
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS)
    parser.add_argument("--lrs", type=lambda v: [float(x) for x in v.split(",")],
                        help="comma-separated learning rates: run the sweep instead of the single run")
    args = parser.parse_args()

    from bertflow_ner.convert import iob_spans

    train = read_conll(args.data / "train.txt", args.train_limit)
    dev = read_conll(args.data / "dev.txt", args.dev_limit)
    gold = [iob_spans(tags) for _, tags in dev]
    n_words = sum(len(w) for w, _ in dev)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        write_docbins(workdir, train, dev)
        if args.lrs:
            sweep = {}
            for lr in args.lrs:
                args.lr = lr
                for system in args.systems.split(","):
                    result = run_system(system, args, train, dev, gold, n_words, workdir)
                    sweep[(system, lr)] = result
                    print(json.dumps({system: {"lr": lr, **result}}), flush=True)
        else:
            for system in args.systems.split(","):
                results[system] = run_system(system, args, train, dev, gold, n_words, workdir)
                print(json.dumps({system: results[system]}), flush=True)
    names = {"bertflow": "bertflow (encoder + bertflow_ner, spacy train)",
             "hf": "HF AutoModelForTokenClassification, plain torch loop",
             "spacy_ner": "spaCy transition-based `ner` on the shared bertflow encoder"}
    if args.lrs:
        body = sweep_section(args, sweep, names, len(train), len(dev))
        if not args.no_write:
            write_section("ner-conll-lr-sweep", body)
        print(body)
        return
    epochs = args.steps * args.batch / len(train)
    types = ["PER", "LOC", "ORG", "MISC"]
    rows = "\n".join(
        f"| {names[s]} | {r['f1']['ALL']:.4f} | " + " | ".join(f"{r['f1'].get(t, 0):.4f}" for t in types)
        + f" | {r['train_s']:.0f} | {r['words_per_s']:.0f} |" for s, r in results.items())
    body = f"""## NER: CoNLL-2003 (bertflow-ner)

`python benchmarks/ner_conll.py --steps {args.steps}{' --train-limit ' + str(args.train_limit) if args.train_limit else ''}{'' if args.systems == DEFAULT_SYSTEMS else ' --systems ' + args.systems}`
— {args.encoder}, {args.steps} steps of batch {args.batch} ({epochs:.2f} epochs over {len(train):,} train sentences),
lr {args.lr:g}, {args.warmup:.0%} linear warm-up then linear decay, weight decay 0.01, grad clip 1.0; full dev split
({len(dev):,} sentences, {n_words:,} words), exact-span F1 computed by the same code for every system.
Machine: {machine()}.

| system | dev F1 | PER | LOC | ORG | MISC | training steps wall s | inference words/s |
|---|---|---|---|---|---|---|---|
{rows}
"""
    if not args.no_write:
        write_section("ner-conll", body)
    print(body)


if __name__ == "__main__":
    main()
