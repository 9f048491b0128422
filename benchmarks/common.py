"""Shared helpers for the benchmark scripts: machine info, timing, and writing
a section of BENCHMARKS.md between markers so each script owns its section."""
import datetime
import os
import platform
import re
import resource
from importlib.metadata import version
from pathlib import Path

BENCHMARKS_MD = Path(__file__).parent / "BENCHMARKS.md"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # what decides whether bf16 runs natively (the same vendor name covers CPUs with and without it)
    native = [name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    cpu += f" ({', '.join(native)})" if native else (" (AVX2, no native bf16)" if "avx2" in flags else "")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only, {os.cpu_count()} cores"
    versions = ", ".join(f"{p} {version(p)}" for p in ("spacy", "spacy-transformers", "transformers", "torch"))
    return f"{cpu}; {device}; torch threads {torch.get_num_threads()}; {versions}; {datetime.date.today()}"


def benchmark_parser(doc: str, dataset: str, *, batch: int, lr: float, dev_limit: bool = True):
    """The arguments every benchmark script shares; each adds its own on top."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / dataset)
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training rows")
    if dev_limit:
        parser.add_argument("--dev-limit", type=int, default=0, help="use only the first N dev rows")
    parser.add_argument("--no-write", action="store_true", help="print the section, don't write BENCHMARKS.md")
    return parser


def rss_mb() -> float:
    """The process's resident memory now (Linux /proc)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between <!-- name:start --> and <!-- name:end -->."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# bertflow benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def accuracy_macro_f1(gold, pred, labels):
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return acc, sum(f1s) / len(f1s)


def hf_finetune(model, train_rows, encode, args, bf16_autocast: bool = False) -> float:
    """The plain Hugging Face fine-tuning loop both baselines use: AdamW (weight
    decay 0.01 except biases and LayerNorm), linear warm-up then decay, grad
    clip 1.0, reshuffled epochs of ``args.batch`` rows until ``args.steps``.
    It hands glibc's freed heap back to the OS as often as bertflow's encoder
    does (without that, long CPU runs grow until they are killed; see
    ``bertflow/encoder/heap.py``), so both sides pay the same for it.

    encode (Callable[[List[row]], BatchEncoding]): rows -> model inputs with labels.
    bf16_autocast (bool): run the forward pass under CPU bf16 autocast, as
        bertflow's ``mixed_precision`` does on a CPU with native bf16 matmuls.
    RETURNS (float): wall seconds of the training steps.
    """
    import random
    import time
    from contextlib import nullcontext

    import torch
    from transformers import get_linear_schedule_with_warmup

    from bertflow.encoder.component import TRIM_EVERY
    from bertflow.encoder.heap import release_freed_memory

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(x in n for x in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(x in n for x in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.steps * args.warmup), args.steps)
    device = next(model.parameters()).device
    order, step = list(range(len(train_rows))), 0
    autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16) if bf16_autocast else nullcontext()
    model.train()
    start = time.perf_counter()
    while step < args.steps:
        rng.shuffle(order)
        for i in range(0, len(order), args.batch):
            enc = encode([train_rows[j] for j in order[i: i + args.batch]]).to(device)
            with autocast:
                loss = model(**enc).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % TRIM_EVERY == 0:
                release_freed_memory()
            if step >= args.steps:
                break
    model.eval()
    return time.perf_counter() - start


_STEP_TIMES = []


def spacy_train_timed(config_path, output_dir, args, overrides: dict) -> float:
    """Run spacy train with the benchmark's step budget and schedule; return the
    wall seconds of the training steps only (spaCy's [training.before_update]
    clock, skipping step 0, which includes a dev evaluation)."""
    import time

    import spacy
    from spacy.cli.train import train as spacy_train

    if "bertflow_bench.step_clock.v1" not in spacy.registry.callbacks:
        @spacy.registry.callbacks("bertflow_bench.step_clock.v1")
        def make_step_clock():
            return lambda nlp, info: _STEP_TIMES.append(time.perf_counter())

    overrides = {
        "paths.encoder": args.encoder, "training.max_steps": args.steps, "training.eval_frequency": args.steps,
        "training.seed": args.seed, "system.seed": args.seed,
        "training.optimizer.learn_rate.initial_rate": args.lr,
        "training.optimizer.learn_rate.warmup_steps": int(args.steps * args.warmup),
        "training.optimizer.learn_rate.total_steps": args.steps,
        "training.batcher.size": args.batch,
        "training.before_update": {"@callbacks": "bertflow_bench.step_clock.v1"},
        **overrides,
    }
    _STEP_TIMES.clear()
    spacy_train(config_path, output_dir, use_gpu=args.gpu_id, overrides=overrides)
    n = len(_STEP_TIMES)
    return (_STEP_TIMES[-1] - _STEP_TIMES[1]) * n / max(n - 2, 1)
