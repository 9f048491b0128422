"""SST-2: bertflow (encoder + bertflow_textcat, trained with spaCy's training
loop from projects/textcat/configs/textcat.cfg) next to a plain Hugging Face
AutoModelForSequenceClassification loop, on the same model directory, steps,
batch size, lr schedule (linear warm-up then decay), weight decay, gradient
clipping and max length. Both are scored with the same accuracy / macro F1
code on the full dev split, and their inference speed is measured on it.

    python benchmarks/textcat_sst2.py --data ../shared/data/sst2 --steps 2000

Writes its section of benchmarks/BENCHMARKS.md.
"""
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import accuracy_macro_f1, benchmark_parser, hf_finetune, machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"0": "NEGATIVE", "1": "POSITIVE"}


def read_tsv(path: Path, limit: int = 0):
    with open(path, encoding="utf8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rows = [(text, LABELS[label]) for text, label in rows]
    return rows[:limit] if limit else rows


def run_bertflow(args, train_path: Path, dev_rows, workdir: Path, mixed_precision: bool = False):
    import spacy
    from bertflow_textcat.convert import convert

    workdir.mkdir(parents=True, exist_ok=True)
    convert(train_path, workdir / "train.spacy", label_map=LABELS)
    dev_tsv = workdir / "dev.tsv"
    dev_tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{k}\n" for t, lab in dev_rows
                                                        for k, v in LABELS.items() if v == lab))
    convert(dev_tsv, workdir / "dev.spacy", label_map=LABELS)
    if args.train_limit:
        from spacy.tokens import DocBin

        nlp = spacy.blank("en")
        docs = list(DocBin().from_disk(workdir / "train.spacy").get_docs(nlp.vocab))[: args.train_limit]
        DocBin(docs=docs).to_disk(workdir / "train.spacy")
    overrides = {
        "paths.train": str(workdir / "train.spacy"), "paths.dev": str(workdir / "dev.spacy"),
        "components.encoder.model.max_length": args.max_length,
        "components.encoder.model.get_windows.window": args.max_length - 2,
        "components.encoder.model.get_windows.stride": (args.max_length - 2) * 3 // 4,
        # fp32 training like the HF loop; "bertflow-mixed": the encoder's mixed_precision (bf16 autocast on
        # a CPU with native bf16 matmuls, fp16 on a GPU)
        "components.encoder.model.mixed_precision": mixed_precision,
    }
    train_time = spacy_train_timed(ROOT / "projects" / "textcat" / "configs" / "textcat.cfg", workdir / "out",
                                   args, overrides)
    nlp = spacy.load(workdir / "out" / "model-last")
    texts = [t for t, _ in dev_rows]
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=args.eval_batch))
    infer_time = time.perf_counter() - start
    preds = [max(d.cats, key=d.cats.get) for d in docs]
    return preds, train_time, len(texts) / infer_time


def run_hf(args, train_rows, dev_rows, bf16_autocast=False):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertflow.encoder.names import resolve_encoder

    path = resolve_encoder(args.encoder)
    names = sorted(LABELS.values())
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))
    device = torch.device("cuda" if args.gpu_id >= 0 else "cpu")
    model.to(device)

    def encode(batch):
        enc = tok([t for t, _ in batch], padding=True, truncation=True, max_length=args.max_length,
                  return_tensors="pt")
        enc["labels"] = torch.tensor([names.index(lab) for _, lab in batch])
        return enc

    train_time = hf_finetune(model, train_rows, encode, args, bf16_autocast=bf16_autocast)
    model.eval()
    texts = [t for t, _ in dev_rows]
    preds = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), args.eval_batch):
            enc = tok(texts[i: i + args.eval_batch], padding=True, truncation=True, max_length=args.max_length,
                      return_tensors="pt").to(device)
            preds.extend(names[k] for k in model(**enc).logits.argmax(-1).tolist())
    infer_time = time.perf_counter() - start
    return preds, train_time, len(texts) / infer_time


def main():
    parser = benchmark_parser(__doc__, "sst2", batch=32, lr=5e-5, dev_limit=False)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--systems", default="bertflow,hf",
                        help="bertflow (fp32 training), bertflow-mixed (mixed_precision: bf16 autocast on a CPU "
                             "with native bf16), hf, hf-mixed (the HF loop's forward under the same bf16 autocast)")
    parser.add_argument("--section", default=None,
                        help="the BENCHMARKS.md section to write (default: textcat-sst2; textcat-sst2-mixed "
                             "when bertflow-mixed runs, textcat-sst2-hf-mixed when only hf-mixed does)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: each system trains once per seed (default: --seed)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    train_rows = read_tsv(args.data / "train.tsv", args.train_limit)
    dev_rows = read_tsv(args.data / "dev.tsv")
    gold = [lab for _, lab in dev_rows]
    labels = sorted(LABELS.values())
    runs = {system: [] for system in args.systems.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            args.seed = seed
            for system in runs:
                if system.startswith("bertflow"):
                    preds, train_s, dps = run_bertflow(args, args.data / "train.tsv", dev_rows,
                                                       Path(tmp) / f"{system}-{seed}",
                                                       mixed_precision=system == "bertflow-mixed")
                else:
                    preds, train_s, dps = run_hf(args, train_rows, dev_rows,
                                                 bf16_autocast=system == "hf-mixed" and _native_bf16())
                acc, f1 = accuracy_macro_f1(gold, preds, labels)
                runs[system].append({"seed": seed, "acc": acc, "macro_f1": f1, "train_s": train_s, "docs_per_s": dps})
                print(json.dumps({system: runs[system][-1]}), flush=True)
    body = report(args, runs, seeds, len(train_rows), len(dev_rows))
    if not args.no_write:
        # an HF-only bf16 run gets a section of its own rather than replacing bertflow's fp32-vs-bf16 one
        default = ("textcat-sst2-mixed" if "bertflow-mixed" in runs else
                   "textcat-sst2-hf-mixed" if "hf-mixed" in runs else "textcat-sst2")
        write_section(args.section or default, body)
    print(body)


def _mean_std(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, std


def report(args, runs, seeds, n_train, n_dev) -> str:
    epochs = args.steps * args.batch / n_train
    names = {"bertflow": "bertflow (encoder + bertflow_textcat, spacy train)",
             "bertflow-mixed": "bertflow, mixed_precision = true (bf16 autocast on this CPU)"
                               if _native_bf16() else "bertflow, mixed_precision = true (no native bf16 here: fp32)",
             "hf": "HF AutoModelForSequenceClassification, plain torch loop",
             "hf-mixed": "HF AutoModelForSequenceClassification, plain torch loop, forward under bf16 autocast"
                         if _native_bf16() else "HF, plain torch loop (no native bf16 here: fp32)"}
    lines = []
    for system, rs in runs.items():
        acc, acc_sd = _mean_std([r["acc"] for r in rs])
        f1, f1_sd = _mean_std([r["macro_f1"] for r in rs])
        per_seed = " / ".join(f"{r['acc']:.4f}" for r in rs)
        spread = f" ± {acc_sd:.4f}" if len(rs) > 1 else ""
        lines.append(f"| {names[system]} | {acc:.4f}{spread} | {per_seed} | {f1:.4f} | "
                     f"{_mean_std([r['train_s'] for r in rs])[0]:.0f} | {_mean_std([r['docs_per_s'] for r in rs])[0]:.0f} |")
    delta = ""
    for ours, peer in (("bertflow", "hf"), ("bertflow-mixed", "hf-mixed")):
        if ours not in runs or peer not in runs:
            continue
        diffs = [100 * (b["acc"] - h["acc"]) for b, h in zip(runs[ours], runs[peer])]
        d, d_sd = _mean_std(diffs)
        speed = _mean_std([r["docs_per_s"] for r in runs[ours]])[0] / _mean_std([r["docs_per_s"] for r in runs[peer]])[0]
        delta += (f"\n{ours} - {peer}: accuracy {d:+.2f} points" + (f" (± {d_sd:.2f} over seeds; per seed "
                  + ", ".join(f"{x:+.2f}" for x in diffs) + ")" if len(diffs) > 1 else "")
                  + f", inference speed x{speed:.2f}.\n")
    if "bertflow" in runs and "bertflow-mixed" in runs:
        fp32, mixed = runs["bertflow"], runs["bertflow-mixed"]
        diffs = [100 * (m["acc"] - f["acc"]) for f, m in zip(fp32, mixed)]
        d, _ = _mean_std(diffs)
        spread = _mean_std([r["acc"] for r in fp32])[1] * 100
        ratio = _mean_std([r["train_s"] for r in fp32])[0] / _mean_std([r["train_s"] for r in mixed])[0]
        delta += (f"\nmixed_precision - fp32: accuracy {d:+.2f} points (per seed "
                  + ", ".join(f"{x:+.2f}" for x in diffs) + f"; fp32's seed spread ± {spread:.2f}), "
                  f"training steps/s x{ratio:.2f}.\n")
    systems_note = f" --systems {','.join(runs)}" if list(runs) != ["bertflow", "hf"] else ""
    seeds_note = f" --seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else ""
    title = "Text classification: SST-2 (bertflow-textcat)" if not {"bertflow-mixed", "hf-mixed"} & set(runs) else \
        "Training in bf16 on the CPU: SST-2 (" + ("mixed_precision" if "bertflow-mixed" in runs else
                                                  "the plain HF loop under bf16 autocast") + ")"
    if args.section:
        title += f", {epochs:.1f} epochs"
    section_note = f" --section {args.section}" if args.section else ""
    return f"""## {title}

`python benchmarks/textcat_sst2.py --steps {args.steps}{seeds_note}{systems_note}{section_note}{' --train-limit ' + str(args.train_limit) if args.train_limit else ''}`
— {args.encoder}, {args.steps} steps of batch {args.batch} ({epochs:.2f} epochs over {n_train:,} train
sentences), lr {args.lr:g}, {args.warmup:.0%} linear warm-up then linear decay, AdamW (weight decay 0.01 on
weight matrices), grad clip 1.0, max length {args.max_length}; full dev split ({n_dev} sentences); inference
batch {args.eval_batch}; {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}) per system: the seed
sets the classifier's initial weights, the batch order and the dropout masks.
Machine: {machine()}.

| system | dev accuracy (mean{' ± sd' if len(seeds) > 1 else ''}) | per seed | dev macro F1 (mean) | training steps wall s | inference docs/s |
|---|---|---|---|---|---|
{chr(10).join(lines)}
{delta}"""


def _native_bf16() -> bool:
    from bertflow.encoder.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


if __name__ == "__main__":
    main()
