"""Inference and training speed: one shared encoder pass against the peers.

On the same texts (by default all 872 SST-2 dev sentences plus the first
1,128 CoNLL-2003 dev sentences: 2,000 real sentences), at batch sizes 8, 32
and 128, each system runs in its own subprocess (so its peak RSS is its own):

  bertflow            encoder + bertflow_textcat + bertflow_ner + bertflow_similarity,
                      one encoder pass per batch (nlp.pipe)
  bertflow-int8       the same pipeline, precision = "int8" (CPU only)
  bertflow-int8-ffn   int8 with the FFN up-projections kept out of int8
                      (int8_exclude = ["intermediate.dense"]: bf16 on a CPU with native
                      bf16, else fp32): what the package guard falls back to
  bertflow-int8-unfused  int8 with query, key and value quantised as three layers, as
                      before fuse_qkv (an A/B against bertflow-int8 with --interleave)
  bertflow-fp16/bf16  the same pipeline, precision = "fp16"/"bf16" (fp16: GPU only; bf16:
                      GPU, or a CPU with native bf16 matmuls, e.g. --interleave --systems
                      bertflow,bertflow-bf16 on one)
  bertflow-encoder    the bertflow encoder component alone (-int8 / -bf16: in int8 / bf16)
  hf-pipelines        three transformers.pipeline()s (text-classification,
                      token-classification with entity grouping, feature-extraction
                      + mean pooling), one after another, on the same model
  hf-models           the three HF models in a hand-written loop (tokenise,
                      pad to the longest row, forward, argmax / mean pooling)
  spacy-transformers  stock `transformer` + spaCy `textcat` + `ner` listening to it
  hf-encoder          the raw HF encoder forward on pre-tokenised, globally
                      length-sorted batches: the ceiling for all of the above
  hf-encoder-int8     the same, after torch's dynamic per-channel int8 quantisation
                      of the Linear layers (CPU; what bertflow's int8 switch applies)

plus a matmul roofline (the best fp32 GFLOP/s torch reaches here, divided
by the model's FLOPs per token) and training throughput: sentences/s of
bertflow's training step (nlp.update on encoder + textcat) against a plain
PyTorch/HF loop (forward, backward, clip, AdamW) on the same batches.
Heads are untrained (initialised): speed does not depend on their weights.

    python benchmarks/speed.py                     # CPU, writes BENCHMARKS.md
    python benchmarks/speed.py --gpu-id 0          # GPU: adds fp16 and bf16
    python benchmarks/speed.py --interleave --systems bertflow,bertflow-int8 --repeats 5
        # the systems in one process, taking turns pass by pass: their ratio is
        # measured under the same machine load (prints; writes nothing)

Writes its section of benchmarks/BENCHMARKS.md (a GPU run its own section).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, peak_rss_mb, write_section  # noqa: E402

SST2_LABELS = ("NEGATIVE", "POSITIVE")
NER_LABELS = ("PER", "LOC", "ORG", "MISC")
CPU_SYSTEMS = "bertflow,bertflow-int8,bertflow-encoder,hf-pipelines,hf-models,spacy-transformers,hf-encoder,hf-encoder-int8"
GPU_SYSTEMS = "bertflow,bertflow-fp16,bertflow-bf16,bertflow-encoder,hf-pipelines,hf-models,spacy-transformers,hf-encoder"


# ---------------------------------------------------------------- data

def load_texts(data: Path, n: int):
    """All SST-2 dev sentences, then CoNLL-2003 dev sentences, up to n texts."""
    with open(data / "sst2" / "dev.tsv", encoding="utf8") as f:
        texts = [row[0] for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    words = []
    for line in open(data / "conll2003" / "dev.txt", encoding="utf8"):
        if line.strip():
            words.append(line.split()[0])
        elif words:
            texts.append(" ".join(words))
            words = []
    if words:
        texts.append(" ".join(words))
    if len(texts) < n:
        raise SystemExit(f"{data} holds only {len(texts)} sentences; asked for {n}.")
    return texts[:n]


# ---------------------------------------------------------------- systems

def _device(args):
    import torch

    return torch.device(f"cuda:{args.gpu_id}") if args.gpu_id >= 0 else torch.device("cpu")


def _init_examples(nlp, texts):
    from spacy.training import Example

    examples = []
    for i, text in enumerate(texts[:8]):
        doc = nlp.make_doc(text)
        ref = nlp.make_doc(text)
        ref.cats = {label: float(j == i % 2) for j, label in enumerate(SST2_LABELS)}
        if len(ref) > 1:
            ref.ents = [ref.char_span(ref[0].idx, ref[0].idx + len(ref[0].text), label=NER_LABELS[i % 4])]
        examples.append(Example(doc, ref))
    return examples


def bertflow_pipeline(args, texts, precision="fp32", heads=("textcat", "ner", "similarity"), int8_exclude=()):
    import spacy

    import bertflow  # noqa: F401  (registers the factories)

    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder",
                 config={"model": {"name": args.encoder, "precision": precision, "max_length": 512,
                                   "int8_exclude": list(int8_exclude)}})
    for head in heads:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    nlp.initialize(lambda: _init_examples(nlp, texts))
    return nlp


def bertflow_int8_unfused(args, texts):
    """The int8 pipeline with its encoder quantised without ``fuse_qkv``."""
    import bertflow.encoder.model as encoder_model

    nlp = bertflow_pipeline(args, texts, "int8")
    model = nlp.get_pipe("encoder").model
    fuse = encoder_model.fuse_qkv
    encoder_model.fuse_qkv = lambda module, skip=frozenset(): 0
    try:
        model.attrs["int8_model"] = encoder_model.quantize_int8(model.transformer)
    finally:
        encoder_model.fuse_qkv = fuse
    return nlp


def spacy_transformers_pipeline(args, texts):
    import spacy
    from bertflow.encoder.names import resolve_encoder
    from thinc.api import Config

    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    listener = {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}
    config = Config({
        "nlp": {"lang": "en", "pipeline": ["transformer", "textcat", "ner"]},
        "components": {
            "transformer": {"factory": "transformer", "max_batch_items": 4096, "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(resolve_encoder(args.encoder)),
                "tokenizer_config": {"use_fast": True}, "mixed_precision": False,
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}},
            "textcat": {"factory": "textcat", "model": {
                "@architectures": "spacy.TextCatReduce.v1", "exclusive_classes": True, "use_reduce_first": False,
                "use_reduce_last": False, "use_reduce_max": False, "use_reduce_mean": True, "nO": None,
                "tok2vec": listener}},
            "ner": {"factory": "ner", "model": {
                "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
                "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None, "tok2vec": dict(listener)}},
        },
    })
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: _init_examples(nlp, texts))
    return nlp


def hf_path(args) -> str:
    from bertflow.encoder.names import resolve_encoder

    return str(resolve_encoder(args.encoder))


def best_of(repeats, one_pass, texts, batch, sync=lambda: None):
    """One warm-up batch, then the fastest of ``repeats`` timed passes over all
    texts (the machine's noise only ever slows a pass down)."""
    one_pass(texts[:batch])
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = one_pass(texts)
        sync()
        best = min(best, time.perf_counter() - start)
        assert len(out) == len(texts)
    return best


def run_spacy(nlp, texts, batch, repeats):
    return best_of(repeats, lambda chunk: list(nlp.pipe(chunk, batch_size=batch)), texts, batch)


def hf_pipelines(args):
    import torch
    from transformers import (AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                              AutoTokenizer, pipeline)

    path, device = hf_path(args), _device(args)
    tok = AutoTokenizer.from_pretrained(path)
    ner_labels = ["O"] + [f"{p}-{lab}" for lab in NER_LABELS for p in ("B", "I")]
    textcat = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).to(device).eval()
    ner = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(ner_labels), id2label=dict(enumerate(ner_labels)),
        label2id={lab: i for i, lab in enumerate(ner_labels)}).to(device).eval()
    encoder = AutoModel.from_pretrained(path).to(device).eval()
    return [
        pipeline("text-classification", model=textcat, tokenizer=tok, device=device),
        pipeline("token-classification", model=ner, tokenizer=tok, device=device, aggregation_strategy="simple"),
        pipeline("feature-extraction", model=encoder, tokenizer=tok, device=device, return_tensors=True),
    ], torch


def run_hf_pipelines(pipes, texts, batch, repeats):
    (textcat, ner, features), torch = pipes

    def one_pass(chunk):
        with torch.inference_mode():
            cats = textcat(chunk, batch_size=batch, truncation=True)
            ents = ner(chunk, batch_size=batch)
            vecs = [f[0].mean(dim=0) for f in features(chunk, batch_size=batch, truncation=True)]
        assert len(cats) == len(ents) == len(vecs)
        return vecs

    return best_of(repeats, one_pass, texts, batch)


def hf_models(args):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    path, device = hf_path(args), _device(args)
    tok = AutoTokenizer.from_pretrained(path)
    models = (AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).to(device).eval(),
              AutoModelForTokenClassification.from_pretrained(path, num_labels=9).to(device).eval(),
              AutoModel.from_pretrained(path).to(device).eval())
    return tok, models, device, torch


def run_hf_models(state, texts, batch, repeats):
    tok, (textcat, ner, encoder), device, torch = state

    def one_pass(chunk):
        out = []
        with torch.inference_mode():
            for i in range(0, len(chunk), batch):
                enc = tok(chunk[i: i + batch], padding=True, truncation=True, return_tensors="pt").to(device)
                labels = textcat(**enc).logits.argmax(-1).tolist()
                tags = ner(**enc).logits.argmax(-1).tolist()
                hidden = encoder(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vecs = ((hidden * mask).sum(1) / mask.sum(1)).cpu()
                out.extend(zip(labels, tags, vecs))
        return out

    return best_of(repeats, one_pass, texts, batch)


def hf_encoder(args, int8=False):
    import torch
    from transformers import AutoModel, AutoTokenizer

    path, device = hf_path(args), _device(args)
    model = AutoModel.from_pretrained(path).to(device).eval()
    if int8:
        from bertflow.encoder.precision import quantize_int8

        model = quantize_int8(model)
    return AutoTokenizer.from_pretrained(path), model, device, torch


def run_hf_encoder(state, texts, batch, repeats):
    """Forward only: tokenised beforehand, sorted by length, padded per batch."""
    tok, model, device, torch = state

    def tensors(chunk):
        ids = sorted(tok(chunk, truncation=True)["input_ids"], key=len)
        batches = []
        for i in range(0, len(ids), batch):
            rows = ids[i: i + batch]
            width = len(rows[-1])
            input_ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            batches.append((input_ids, mask, len(rows)))
        return batches

    prepared = {len(texts[:batch]): tensors(texts[:batch]), len(texts): tensors(texts)}

    def one_pass(chunk):
        with torch.inference_mode():
            for input_ids, mask, _ in prepared[len(chunk)]:
                model(input_ids=input_ids, attention_mask=mask)
        return chunk

    return best_of(repeats, one_pass, texts, batch, sync=lambda: _sync(torch, device))


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SYSTEMS = {
    "bertflow": (lambda a, t: bertflow_pipeline(a, t), run_spacy),
    "bertflow-int8": (lambda a, t: bertflow_pipeline(a, t, "int8"), run_spacy),
    "bertflow-int8-ffn": (lambda a, t: bertflow_pipeline(a, t, "int8", int8_exclude=["intermediate.dense"]), run_spacy),
    "bertflow-int8-unfused": (bertflow_int8_unfused, run_spacy),
    "bertflow-fp16": (lambda a, t: bertflow_pipeline(a, t, "fp16"), run_spacy),
    "bertflow-bf16": (lambda a, t: bertflow_pipeline(a, t, "bf16"), run_spacy),
    "bertflow-encoder": (lambda a, t: bertflow_pipeline(a, t, heads=()), run_spacy),
    "bertflow-encoder-int8": (lambda a, t: bertflow_pipeline(a, t, "int8", heads=()), run_spacy),
    "bertflow-encoder-bf16": (lambda a, t: bertflow_pipeline(a, t, "bf16", heads=()), run_spacy),
    "hf-pipelines": (lambda a, t: hf_pipelines(a), run_hf_pipelines),
    "hf-models": (lambda a, t: hf_models(a), run_hf_models),
    "spacy-transformers": (spacy_transformers_pipeline, run_spacy),
    "hf-encoder": (lambda a, t: hf_encoder(a), run_hf_encoder),
    "hf-encoder-int8": (lambda a, t: hf_encoder(a, int8=True), run_hf_encoder),
}


# ---------------------------------------------------------------- roofline, training

def roofline(args, texts):
    """Best matmul GFLOP/s torch reaches here (fp32; fp16/bf16 too on a GPU), and
    the model's FLOPs per wordpiece at the texts' mean row length."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    device = _device(args)
    cfg = AutoConfig.from_pretrained(hf_path(args))
    tok = AutoTokenizer.from_pretrained(hf_path(args))
    rows = [len(r) for r in tok(texts, truncation=True)["input_ids"]]
    mean_len = sum(rows) / len(rows)
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    # per layer: Q, K, V, O projections 4·d² MACs, FFN 2·d·ff, attention scores and context 2·L·d
    flops_per_token = 2 * layers * (4 * d * d + 2 * d * ff + 2 * mean_len * d)
    out = {"flops_per_token": flops_per_token, "mean_row_len": mean_len, "wordpieces": sum(rows)}
    dtypes = ["fp32"] + (["fp16", "bf16"] if device.type == "cuda" else [])
    for name in dtypes:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
        best = 0.0
        # the shapes the encoder multiplies at batch 32 (rows x d @ d x ff), and a large square one
        for m, k, n in ((32 * int(mean_len), d, ff), (32 * int(mean_len), ff, d), (2048, 2048, 2048)):
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            reps = 20 if device.type == "cpu" else 200
            with torch.inference_mode():
                a @ b
                _sync(torch, device)
                start = time.perf_counter()
                for _ in range(reps):
                    a @ b
                _sync(torch, device)
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
        out[f"gflops_{name}"] = best
    return out


def training(args, texts):
    """Sentences/s of training steps: bertflow (encoder + textcat, nlp.update)
    against a plain PyTorch/HF loop on the same batches of 32."""
    import random

    import torch
    from spacy.training import Example
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rng = random.Random(0)
    sents = texts[:872]
    batches = [[sents[rng.randrange(len(sents))] for _ in range(32)] for _ in range(args.train_steps + 2)]
    labels = [[len(t) % 2 for t in b] for b in batches]
    nlp = bertflow_pipeline(args, texts, heads=("textcat",))
    sgd = nlp.create_optimizer()
    examples = []
    for batch, labs in zip(batches, labels):
        egs = []
        for text, lab in zip(batch, labs):
            doc = nlp.make_doc(text)
            ref = nlp.make_doc(text)
            ref.cats = {name: float(j == lab) for j, name in enumerate(SST2_LABELS)}
            egs.append(Example(doc, ref))
        examples.append(egs)
    device = _device(args)
    for egs in examples[:2]:
        nlp.update(egs, sgd=sgd, drop=0.1)
    _sync(torch, device)
    start = time.perf_counter()
    for egs in examples[2:]:
        nlp.update(egs, sgd=sgd, drop=0.1)
    _sync(torch, device)
    bertflow_s = time.perf_counter() - start

    path = hf_path(args)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)

    def step(batch, labs):
        enc = tok(batch, padding=True, truncation=True, return_tensors="pt").to(device)
        loss = model(**enc, labels=torch.tensor(labs, device=device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    for batch, labs in zip(batches[:2], labels[:2]):
        step(batch, labs)
    _sync(torch, device)
    start = time.perf_counter()
    for batch, labs in zip(batches[2:], labels[2:]):
        step(batch, labs)
    _sync(torch, device)
    hf_s = time.perf_counter() - start
    n = 32 * args.train_steps
    return {"bertflow": n / bertflow_s, "hf": n / hf_s}


# ---------------------------------------------------------------- driver

def worker(args):
    texts = load_texts(args.data, args.n)
    if args.worker == "roofline":
        result = roofline(args, texts)
    elif args.worker == "training":
        result = training(args, texts)
    else:
        build, run = SYSTEMS[args.worker]
        state = build(args, texts)
        result = {"seconds": {b: run(state, texts, b, args.repeats) for b in _batches(args)}}
    result["peak_rss_mb"] = peak_rss_mb()
    import torch

    if torch.cuda.is_available() and args.gpu_id >= 0:
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(args.gpu_id) / 2**20
    print("RESULT " + json.dumps(result), flush=True)


PROFILE_PARTS = (  # first match wins, on the innermost frames of each sample
    ("spaCy tokenizer", "make_doc"), ("HF tokenizer call", "tokenization_utils"),
    ("wordpiece alignment and windows (bertflow)", "encoder/layout.py"),
    ("wordpiece alignment and windows (bertflow)", "encoder/alignment.py"),
    ("wordpiece alignment and windows (bertflow)", "encoder/tokenize.py"),
    ("per-doc split of the outputs (bertflow)", "encoder/batch.py"),
    ("encoder forward (torch)", "torch/"), ("encoder forward (torch)", "modeling_bert"),
    ("NER head", "bertflow_ner"), ("textcat head", "bertflow_textcat"), ("similarity head", "bertflow_similarity"),
    ("bertflow heads (shared layers)", "bertflow/heads"), ("bertflow encoder (other)", "bertflow/encoder"),
)


def profile(args):
    """py-spy samples of the bertflow pipeline's timed passes at batch 32, by part."""
    import shutil
    import tempfile
    from collections import Counter

    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not py_spy:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    cmd = [py_spy, "record", "-r", "200", "-f", "raw", "-o", str(raw), "--", sys.executable, __file__,
           "--worker", "bertflow", "--batches", "32", "--data", str(args.data), "--n", str(args.n),
           "--encoder", args.encoder, "--repeats", str(args.repeats)]
    subprocess.run(cmd, check=True, capture_output=True)
    parts, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        if "run_spacy" not in stack:
            continue
        total += int(n)
        frames = stack.split(";")
        part = next((name for frame in reversed(frames) for name, key in PROFILE_PARTS if key in frame), None)
        parts[part or "other: " + frames[-1]] += int(n)
    print(f"{total} samples of bertflow's pipe at batch 32:")
    for name, n in parts.most_common(12):
        print(f"{100 * n / total:5.1f}%  {name}")


def interleave(args, systems):
    """All ``systems`` in this one process, taking turns: per batch size, round
    after round, one timed pass of each. Each system's median docs/s, and its
    median ratio to the first system within a round, so a change in the
    machine's load between processes can't pass for a speed-up."""
    import statistics

    texts = load_texts(args.data, args.n)
    states = {name: SYSTEMS[name][0](args, texts) for name in systems}
    extra = (f" --n {args.n}" if args.n != 2000 else "") + (f" --batches {args.batches}" if args.batches != "8,32,128" else "")
    lines = [f"`python benchmarks/speed.py --interleave --systems {','.join(systems)} --repeats {args.repeats}{extra}` — "
             f"{len(texts)} sentences, {args.repeats} rounds per batch size, the systems taking turns in one "
             f"process; median over rounds. Machine: {machine()}.", "",
             "| batch | " + " | ".join(f"{name} docs/s" for name in systems) + " | "
             + " | ".join(f"{name} / {systems[0]}" for name in systems[1:]) + " |",
             "|---|" + "---|" * (2 * len(systems) - 1)]
    for batch in _batches(args):
        docs_s = {name: [] for name in systems}
        for _ in range(args.repeats):
            for name in systems:
                docs_s[name].append(len(texts) / SYSTEMS[name][1](states[name], texts, batch, 1))
        ratios = [[a / b for a, b in zip(docs_s[name], docs_s[systems[0]])] for name in systems[1:]]
        lines.append(f"| {batch} | " + " | ".join(f"{statistics.median(docs_s[name]):.1f}" for name in systems) + " | "
                     + " | ".join(f"×{statistics.median(r):.2f} (rounds ×{min(r):.2f}–×{max(r):.2f})" for r in ratios)
                     + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


def _batches(args):
    return [int(b) for b in args.batches.split(",")]


def spawn(args, name):
    """Run one system (all batch sizes) in a fresh process, so its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--worker", name, "--batches", args.batches, "--data", str(args.data),
           "--n", str(args.n), "--encoder", args.encoder, "--gpu-id", str(args.gpu_id),
           "--train-steps", str(args.train_steps), "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
    raise SystemExit(f"{name} failed with exit code {proc.returncode}")


def _cpu_systems() -> str:
    """The default CPU systems, with bf16 where this CPU multiplies bf16 natively."""
    from bertflow.encoder.precision import cpu_has_native_bf16

    return CPU_SYSTEMS + (",bertflow-bf16" if cpu_has_native_bf16() else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=2000, help="number of sentences")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--batches", default="8,32,128")
    parser.add_argument("--systems", default="", help=f"comma-separated; default CPU: {CPU_SYSTEMS} (+ bertflow-bf16 on a CPU with native bf16); "
                             f"GPU: {GPU_SYSTEMS}")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps per system (0: skip)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per system; the fastest counts")
    parser.add_argument("--profile", action="store_true",
                        help="sample bertflow at batch 32 with py-spy (pip install py-spy) and print where the time goes")
    parser.add_argument("--no-write", action="store_true", help="print the section, don't write BENCHMARKS.md")
    parser.add_argument("--interleave", action="store_true",
                        help="run --systems in one process, taking turns pass by pass; print their ratios")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.profile:
        return profile(args)

    systems = (args.systems or (GPU_SYSTEMS if args.gpu_id >= 0 else _cpu_systems())).split(",")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"Unknown system(s) {unknown}; known: {', '.join(SYSTEMS)}")
    if args.interleave:
        return interleave(args, systems)
    batches = _batches(args)
    texts = load_texts(args.data, args.n)
    roof = spawn(args, "roofline")
    print(f"roofline: {json.dumps(roof)}", flush=True)
    results, memory = {}, {}
    for system in systems:
        res = spawn(args, system)
        memory[system] = res
        for batch, seconds in res["seconds"].items():
            results[(system, int(batch))] = {"docs_s": len(texts) / seconds, "wp_s": roof["wordpieces"] / seconds}
            print(f"batch {batch:>3} {system:<20} {len(texts) / seconds:8.1f} docs/s "
                  f"{roof['wordpieces'] / seconds:9.0f} wp/s", flush=True)
        print(f"{system}: peak RSS {res['peak_rss_mb']:.0f} MB"
              + (f", GPU peak {res['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in res else ""), flush=True)
        if args.json:  # after each system, so an interrupted run keeps what it measured
            args.json.write_text(json.dumps({"roofline": roof, "memory": memory}, indent=1))
    train = spawn(args, "training") if args.train_steps else None
    if train:
        print(f"training sentences/s: {json.dumps(train)}", flush=True)
    body = report(args, systems, batches, results, memory, roof, train, len(texts))
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"roofline": roof, "training": train, "memory": memory, "results": [
            {"system": s, "batch": b, **r} for (s, b), r in results.items()]}, indent=1))
    if not args.no_write:
        write_section("speed-gpu" if args.gpu_id >= 0 else "speed-cpu", body)


def report(args, systems, batches, results, memory, roof, train, n_texts) -> str:
    where = "GPU" if args.gpu_id >= 0 else "CPU"
    cmd = "python benchmarks/speed.py" + (f" --gpu-id {args.gpu_id}" if args.gpu_id >= 0 else "")
    lines = [f"## Inference speed ({where})", "",
             f"`{cmd}` — {args.encoder}, {n_texts} real sentences (SST-2 dev, then CoNLL-2003 dev), "
             f"{roof['wordpieces']:,} wordpieces incl. [CLS]/[SEP] (mean row {roof['mean_row_len']:.1f}); "
             f"each system in its own process (peak RSS over all its batch sizes), one warm-up batch, "
             f"then the fastest of {args.repeats} timed passes.",
             f"Machine: {machine()}.", ""]
    gpu = args.gpu_id >= 0
    header = ("| system | " + " | ".join(f"batch {b} docs/s | wp/s" for b in batches) + " | peak RSS MB |"
              + (" GPU peak MB |" if gpu else ""))
    lines += [header, "|---|" + "---|---|" * len(batches) + "---|" + ("---|" if gpu else "")]
    for system in systems:
        cells = [f"{results[(system, b)]['docs_s']:.1f} | {results[(system, b)]['wp_s']:,.0f}" for b in batches]
        mem = memory[system]
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {mem['peak_rss_mb']:.0f} |"
                     + (f" {mem.get('gpu_peak_mb', 0):.0f} |" if gpu else ""))
    lines.append("")
    for b in batches:
        base = results.get(("bertflow", b))
        if not base:
            continue
        ratios = [f"{peer} ×{base['docs_s'] / results[(peer, b)]['docs_s']:.2f}"
                  for peer in systems if peer != "bertflow" and (peer, b) in results]
        lines.append(f"- batch {b}: bertflow / " + ", ".join(ratios))
    lines.append("")
    key = "fp32"
    bound = roof[f"gflops_{key}"] * 1e9 / roof["flops_per_token"]
    lines.append(f"Roofline: best fp32 matmul {roof['gflops_fp32']:,.0f} GFLOP/s; the model costs "
                 f"{roof['flops_per_token'] / 1e6:.1f} MFLOP per wordpiece at the mean row length, so at most "
                 f"{bound:,.0f} wp/s in fp32.")
    for name in ("fp16", "bf16"):
        if f"gflops_{name}" in roof:
            lines.append(f"{name} matmul {roof[f'gflops_{name}']:,.0f} GFLOP/s → at most "
                         f"{roof[f'gflops_{name}'] * 1e9 / roof['flops_per_token']:,.0f} wp/s.")
    for b in batches:
        if ("bertflow-encoder", b) in results:
            r = results[("bertflow-encoder", b)]
            lines.append(f"- batch {b}: bertflow encoder pass {r['wp_s']:,.0f} wp/s = {100 * r['wp_s'] / bound:.0f}% "
                         f"of the fp32 roofline" + (f"; raw HF encoder {results[('hf-encoder', b)]['wp_s']:,.0f} wp/s "
                                                    f"= {100 * results[('hf-encoder', b)]['wp_s'] / bound:.0f}%"
                                                    if ("hf-encoder", b) in results else ""))
    if train:
        lines += ["", f"Training (batch 32, {args.train_steps} timed steps after 2 warm-up): bertflow "
                  f"(encoder + textcat, nlp.update) {train['bertflow']:.1f} sentences/s, plain PyTorch/HF loop "
                  f"{train['hf']:.1f} sentences/s: ×{train['bertflow'] / train['hf']:.2f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
