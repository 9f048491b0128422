"""STS-B: bertflow-similarity next to sentence-transformers, in one run, on the
same minilm-l6 directory, data, epochs, batch, lr schedule and dev split:

  (a) zero-shot bi-encoder: cosine of the pooled, normalised embeddings;
  (b) bi-encoder fine-tuned on STS-B train with CosineSimilarityLoss
      (bertflow: spacy train on the `bertflow init config --tasks similarity`
      config; sentence-transformers: SentenceTransformer.fit);
  (c) cross-encoder fine-tuned on STS-B train (bertflow_pair_classifier, spacy
      train; sentence-transformers: CrossEncoder.fit, one label, BCE on score/5).

Spearman (and Pearson) on the full dev split, training wall time and
embeddings (or pairs) per second over it.

    pip install sentence-transformers "datasets<4" accelerate   # the peer, for this script only
    python benchmarks/similarity_stsb.py --data ../shared/data/stsb --epochs 1

Writes its section of benchmarks/BENCHMARKS.md.
"""
import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_stsb(path: Path, limit: int = 0):
    with open(path, encoding="utf8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    head = rows[0]
    ia, ib, isc = head.index("sentence1"), head.index("sentence2"), head.index("score")
    pairs = [(r[ia], r[ib], float(r[isc])) for r in rows[1:] if len(r) == len(head)]
    return pairs[:limit] if limit else pairs


def correlations(gold, pred):
    from bertflow_similarity.scorer import pearson, spearman

    return spearman(gold, pred), pearson(gold, pred)


def bertflow_bi(args, nlp, dev):
    from bertflow_similarity.retrieval import embed

    sentences = [a for a, _, _ in dev] + [b for _, b, _ in dev]
    start = time.perf_counter()
    vectors = embed(nlp, sentences, batch_size=args.eval_batch)
    per_s = len(sentences) / (time.perf_counter() - start)
    n = len(dev)
    cos = (vectors[:n] * vectors[n:]).sum(axis=1)
    return correlations([s for _, _, s in dev], cos), per_s


def st_bi(args, model, dev):
    sentences = [a for a, _, _ in dev] + [b for _, b, _ in dev]
    start = time.perf_counter()
    vectors = model.encode(sentences, batch_size=args.eval_batch, normalize_embeddings=True, convert_to_numpy=True)
    per_s = len(sentences) / (time.perf_counter() - start)
    n = len(dev)
    cos = (vectors[:n] * vectors[n:]).sum(axis=1)
    return correlations([s for _, _, s in dev], cos), per_s


def train_bertflow(args, task, train_path, dev_path, workdir, steps):
    import spacy

    from bertflow.api import make_config

    config = workdir / f"{task}.cfg"
    config.write_text(make_config([task], encoder=args.encoder, max_steps=steps, lr=args.lr))
    bench = argparse.Namespace(**{**vars(args), "steps": steps})
    overrides = {"paths.train": str(train_path), "paths.dev": str(dev_path)}
    train_s = spacy_train_timed(config, workdir / task, bench, overrides)
    return spacy.load(workdir / task / "model-last"), train_s


def write_pairs(pairs, path, mode, tmp):
    from bertflow_similarity.convert import convert

    jsonl = Path(tmp) / f"{path.stem}.jsonl"
    jsonl.write_text("".join(json.dumps({"text_a": a, "text_b": b, "score": s}) + "\n" for a, b, s in pairs),
                     encoding="utf8")
    convert(jsonl, path, mode=mode)
    return path


def main():
    parser = benchmark_parser(__doc__, "stsb", batch=16, lr=2e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--parts", default="zero,bi,cross")
    args = parser.parse_args()

    import spacy
    from sentence_transformers import CrossEncoder, InputExample, SentenceTransformer, losses
    from torch.utils.data import DataLoader

    import bertflow  # noqa: F401
    from bertflow.api import resolve_encoder

    torch.manual_seed(args.seed)
    path = resolve_encoder(args.encoder)
    train = read_stsb(args.data / "train.tsv", args.train_limit)
    dev = read_stsb(args.data / "dev.tsv", args.dev_limit)
    steps = math.ceil(len(train) / args.batch) * args.epochs
    warmup = int(steps * args.warmup)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        parts = args.parts.split(",")
        if "zero" in parts:
            nlp = spacy.blank("en")
            nlp.add_pipe("bertflow_encoder", config={"model": {"name": args.encoder}})
            nlp.add_pipe("bertflow_similarity")
            nlp.initialize()
            (sp, pe), per_s = bertflow_bi(args, nlp, dev)
            (st_sp, st_pe), st_per_s = st_bi(args, SentenceTransformer(path, device="cpu"), dev)
            results["zero"] = {"bertflow": [sp, pe, None, per_s], "st": [st_sp, st_pe, None, st_per_s]}
            print(json.dumps(results["zero"]), flush=True)
        if "bi" in parts:
            train_bi = write_pairs(train, workdir / "train_bi.spacy", "bi", tmp)
            dev_bi = write_pairs(dev, workdir / "dev_bi.spacy", "bi", tmp)
            nlp, train_s = train_bertflow(args, "similarity", train_bi, dev_bi, workdir, steps)
            (sp, pe), per_s = bertflow_bi(args, nlp, dev)
            torch.manual_seed(args.seed)
            model = SentenceTransformer(path, device="cpu")
            loader = DataLoader([InputExample(texts=[a, b], label=s / 5.0) for a, b, s in train], shuffle=True,
                                batch_size=args.batch)
            start = time.perf_counter()
            model.fit(train_objectives=[(loader, losses.CosineSimilarityLoss(model))], epochs=args.epochs,
                      warmup_steps=warmup, optimizer_params={"lr": args.lr}, show_progress_bar=False)
            st_train_s = time.perf_counter() - start
            (st_sp, st_pe), st_per_s = st_bi(args, model, dev)
            results["bi"] = {"bertflow": [sp, pe, train_s, per_s], "st": [st_sp, st_pe, st_train_s, st_per_s]}
            print(json.dumps(results["bi"]), flush=True)
        if "cross" in parts:
            from bertflow_similarity.retrieval import score_pairs

            train_x = write_pairs(train, workdir / "train_x.spacy", "cross", tmp)
            dev_x = write_pairs(dev, workdir / "dev_x.spacy", "cross", tmp)
            nlp, train_s = train_bertflow(args, "pair_classifier", train_x, dev_x, workdir, steps)
            start = time.perf_counter()
            pred = score_pairs(nlp, [(a, b) for a, b, _ in dev], batch_size=args.eval_batch)
            per_s = len(dev) / (time.perf_counter() - start)
            sp, pe = correlations([s for _, _, s in dev], pred)
            torch.manual_seed(args.seed)
            model = CrossEncoder(path, num_labels=1, device="cpu")
            loader = DataLoader([InputExample(texts=[a, b], label=s / 5.0) for a, b, s in train], shuffle=True,
                                batch_size=args.batch)
            start = time.perf_counter()
            model.fit(train_dataloader=loader, epochs=args.epochs, warmup_steps=warmup,
                      optimizer_params={"lr": args.lr}, show_progress_bar=False)
            st_train_s = time.perf_counter() - start
            start = time.perf_counter()
            st_pred = model.predict([(a, b) for a, b, _ in dev], batch_size=args.eval_batch, show_progress_bar=False)
            st_per_s = len(dev) / (time.perf_counter() - start)
            st_sp, st_pe = correlations([s for _, _, s in dev], numpy.asarray(st_pred).ravel())
            results["cross"] = {"bertflow": [sp, pe, train_s, per_s], "st": [st_sp, st_pe, st_train_s, st_per_s]}
            print(json.dumps(results["cross"]), flush=True)
    labels = {"zero": "(a) zero-shot bi-encoder", "bi": "(b) bi-encoder fine-tuned", "cross": "(c) cross-encoder fine-tuned"}
    unit = {"zero": "sentences/s", "bi": "sentences/s", "cross": "pairs/s"}
    for part, res in results.items():
        for system, name in (("bertflow", "bertflow"), ("st", "sentence-transformers")):
            sp, pe, train_s, per_s = res[system]
            rows.append(f"| {labels[part]} | {name} | {sp:.4f} | {pe:.4f} | "
                        f"{'-' if train_s is None else f'{train_s:.0f}'} | {per_s:.0f} {unit[part]} |")
        rows.append(f"| | bertflow - sentence-transformers | {res['bertflow'][0] - res['st'][0]:+.4f} | | | |")
    table = "\n".join(rows)
    body = f"""## Sentence similarity: STS-B (bertflow-similarity)

`python benchmarks/similarity_stsb.py --epochs {args.epochs}{' --train-limit ' + str(args.train_limit) if args.train_limit else ''}`
— {args.encoder}; fine-tuning: {args.epochs} epoch(s) over {len(train):,} train pairs = {steps} steps of
{args.batch} pairs, lr {args.lr:g}, {args.warmup:.0%} linear warm-up then linear decay (both systems); dev
split {len(dev):,} pairs. Bi-encoder: mean pooling over all positions, L2-normalised, cosine; loss
CosineSimilarityLoss (MSE of cosine against score/5). Cross-encoder: BERT pooler over [CLS], one sigmoid
output, BCE against score/5. sentence-transformers {__import__('sentence_transformers').__version__}.
Machine: {machine()}.

| part | system | dev Spearman | dev Pearson | training wall s | inference speed |
|---|---|---|---|---|---|
{table}
"""
    if not args.no_write:
        write_section("similarity-stsb", body)
    print(body)


if __name__ == "__main__":
    main()
