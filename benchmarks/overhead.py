"""The pipeline's own work, without the transformer: stub-forward overhead.

On a GPU the transformer forward of a small encoder is fast, and what the
pipeline does around it (tokenising, windows and alignment, splitting the
outputs per doc, pooling, the heads' layers, NER decoding, host copies, many
small array operations) decides the throughput. A CPU can measure that work
on its own: this script runs the real 3-head pipeline (encoder + textcat +
NER + similarity, untrained heads) once to record the transformer's outputs
for every sub-batch, then replays them (the forward becomes a dictionary
lookup) and times what is left, per component:

  tokenize   the encoder's wordpiece tokenisation of the sort buffer (HF fast tokenizer)
  encoder    the encoder component's other work: windows, alignment, padding,
             splitting the batch into per-doc outputs, spaCy's pipe plumbing
  textcat / ner / similarity   each head's predict + set_annotations

as µs per doc (CPU time of the process; wall time on a GPU) at batch 8, 32
and 128, and the number of calls into
numpy, thinc and torch that each head makes per batch (functions and array
methods; a proxy for kernel launches on a GPU, which must not grow with the
number of docs in the batch; operator expressions such as ``a + b`` are not
counted).

    python benchmarks/overhead.py                      # this tree, writes BENCHMARKS.md
    python benchmarks/overhead.py --baseline 7884c3b   # also the code at that commit,
        # the two taking turns round after round (each in a fresh process)

With ``--baseline`` the other commit is checked out into a temporary git
worktree and run from there (its bertflow and plugins first on PYTHONPATH);
the figures are medians over ``--rounds`` rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_section  # noqa: E402
from speed import bertflow_pipeline, load_texts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADS = ("textcat", "ner", "similarity")
PARTS = ("tokenize", "encoder") + HEADS
ARRAY_MODULES = ("numpy", "cupy", "thinc", "torch", "blis", "spacy_transformers")
# CPU time of this process on the CPU (the work is single-threaded: torch threads 1, no forward), so that
# time taken by other tenants of a shared machine does not count; wall time on a GPU, where the host waits
CLOCK = time.process_time


# ---------------------------------------------------------------- worker (one tree, one process)

def stub_forward():
    """Replace the transformer's inference pass by a replay of recorded outputs;
    returns the recording dict (key: the sub-batch's input ids)."""
    import bertflow.encoder.model as encoder_model

    real = encoder_model._inference
    recorded = {}

    def replay(model, wordpieces, keep):
        ids = wordpieces.input_ids
        key = (ids.shape, ids.tobytes())
        if key not in recorded:
            recorded[key] = real(model, wordpieces, keep)
        return recorded[key]

    encoder_model._inference = replay
    return recorded


class PartTimer:
    """Accumulates wall time of wrapped methods by part name."""

    def __init__(self):
        self.seconds = {}
        self.calls = {}
        self.counting = False

    def wrap(self, obj, method: str, part: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            if self.counting:
                with CallCounter() as counter:
                    result = inner(*args, **kwargs)
                self.calls.setdefault(part, []).append(counter.n)
                return result
            start = CLOCK()
            result = inner(*args, **kwargs)
            self.seconds[part] = self.seconds.get(part, 0.0) + CLOCK() - start
            return result

        setattr(obj, method, timed)


class CallCounter:
    """Counts calls into numpy, thinc, torch (functions and C-level array
    methods) while active (sys.setprofile)."""

    def __init__(self):
        self.n = 0

    def _hook(self, frame, event, arg):
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            module = getattr(arg, "__module__", None) or type(owner).__module__ or ""
            if module.startswith(ARRAY_MODULES):
                self.n += 1
        elif event == "call":
            filename = frame.f_code.co_filename
            if any(f"/{m}/" in filename for m in ("numpy", "thinc/backends", "cupy", "torch")):
                # count the outermost library frame only
                caller = frame.f_back.f_code.co_filename if frame.f_back else ""
                if not any(f"/{m}/" in caller for m in ("numpy", "thinc/backends", "cupy", "torch")):
                    self.n += 1

    def __enter__(self):
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def worker(args) -> dict:
    import torch

    global CLOCK
    torch.set_num_threads(args.threads)
    if args.gpu_id >= 0:
        CLOCK = time.perf_counter
    texts = load_texts(args.data, args.n)
    nlp = bertflow_pipeline(args, texts)
    stub_forward()
    timer = PartTimer()
    encoder = nlp.get_pipe("encoder")
    timer.wrap(encoder, "_tokenize_buffer", "tokenize")
    for head in HEADS:
        pipe = nlp.get_pipe(head)
        timer.wrap(pipe, "predict", head)
        timer.wrap(pipe, "set_annotations", head)
    docs = [nlp.make_doc(text) for text in texts]
    result = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        list(nlp.pipe(docs, batch_size=batch))  # records the forward outputs of this batching
        best = None
        for _ in range(args.repeats):
            timer.seconds = {}
            start = CLOCK()
            list(nlp.pipe(docs, batch_size=batch))
            total = CLOCK() - start
            if best is None or total < best["total"]:
                best = {"total": total, **timer.seconds}
        parts = {part: best.get(part, 0.0) for part in PARTS}
        parts["encoder"] = best["total"] - sum(parts.values())
        timer.calls, timer.counting = {}, True
        list(nlp.pipe(docs[: batch * 4], batch_size=batch))  # four full batches
        timer.counting = False
        result[batch] = {
            "us_per_doc": {part: 1e6 * s / len(docs) for part, s in parts.items()},
            "total_us_per_doc": 1e6 * best["total"] / len(docs),
            # predict + set_annotations of a batch: calls per batch
            "calls_per_batch": {head: 2 * statistics.median(timer.calls.get(head, [0])) for head in HEADS},
        }
    return result


# ---------------------------------------------------------------- driver

def checkout(ref: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="bertflow_base_")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref], check=True,
                   capture_output=True)
    return where


def spawn(args, tree: Path) -> dict:
    paths = [str(tree)] + [str(p) for p in sorted((tree / "plugins").iterdir()) if p.is_dir()]
    # one thread everywhere: the pipeline's own work is single-threaded, and idle pool threads that spin
    # would count as CPU time
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "TOKENIZERS_PARALLELISM": "false",
           **{var: str(args.threads) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    cmd = [sys.executable, __file__, "--worker", "--data", str(args.data), "--n", str(args.n),
           "--batches", args.batches, "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--encoder", args.encoder, "--gpu-id", str(args.gpu_id)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
    raise SystemExit(f"the worker in {tree} failed with exit code {proc.returncode}")


def median_result(runs):
    out = {}
    for batch in runs[0]:
        out[batch] = {
            "us_per_doc": {p: statistics.median(r[batch]["us_per_doc"][p] for r in runs) for p in PARTS},
            "total_us_per_doc": statistics.median(r[batch]["total_us_per_doc"] for r in runs),
            "calls_per_batch": runs[0][batch]["calls_per_batch"],
        }
    return out


def table(name: str, res: dict) -> list:
    lines = [f"| {name} batch | " + " | ".join(f"{p} µs/doc" for p in PARTS) + " | total µs/doc | "
             + " | ".join(f"{h} calls/batch" for h in HEADS) + " |",
             "|---|" + "---|" * (len(PARTS) + 1 + len(HEADS))]
    for batch, r in res.items():
        lines.append(f"| {batch} | " + " | ".join(f"{r['us_per_doc'][p]:.0f}" for p in PARTS)
                     + f" | {r['total_us_per_doc']:.0f} | "
                     + " | ".join(f"{r['calls_per_batch'][h]:.0f}" for h in HEADS) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--n", type=int, default=2000, help="number of sentences")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--batches", default="8,32,128")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per process; the fastest counts")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree, taking turns")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the stub forward uses none)")
    parser.add_argument("--baseline", help="git ref to compare against, run from a temporary worktree")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {f"baseline {args.baseline}": checkout(args.baseline), **trees}
    runs = {name: [] for name in trees}
    try:
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                runs[name].append(spawn(args, tree))
                r = runs[name][-1]
                print(f"round {round_ + 1} {name}: " + ", ".join(
                    f"batch {b} {v['total_us_per_doc']:.0f} µs/doc" for b, v in r.items()), flush=True)
    finally:
        for name, tree in trees.items():
            if tree != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    results = {name: median_result(r) for name, r in runs.items()}
    cmd = "python benchmarks/overhead.py" + (f" --baseline {args.baseline}" if args.baseline else "")
    lines = ["## Pipeline overhead without the transformer (stub forward, CPU)", "",
             f"`{cmd}` — the 3-head pipeline (encoder + textcat + NER + similarity) on {args.n} real "
             f"sentences (SST-2 dev, then CoNLL-2003 dev; docs made beforehand), the transformer's outputs "
             f"replayed from a first pass; CPU time of the process ({'wall time on the GPU' if args.gpu_id >= 0 else 'other tenants of the machine excluded'}); the fastest of {args.repeats} passes per process, median over "
             f"{args.rounds} processes per tree" + (", the trees taking turns" if args.baseline else "")
             + f"; torch threads {args.threads}. calls/batch: calls into numpy, thinc and torch by the head's "
             f"predict + set_annotations per batch (a kernel-launch proxy). Machine: {machine()}.", ""]
    for name, res in results.items():
        lines += table(name, res) + [""]
    if args.baseline:
        base, new = results[f"baseline {args.baseline}"], results["this tree"]
        for batch in new:
            own = lambda r: r["total_us_per_doc"] - r["us_per_doc"]["tokenize"]  # noqa: E731
            lines.append(f"- batch {batch}: total {base[batch]['total_us_per_doc']:.0f} → "
                         f"{new[batch]['total_us_per_doc']:.0f} µs/doc "
                         f"(×{new[batch]['total_us_per_doc'] / base[batch]['total_us_per_doc']:.2f}); "
                         f"without the wordpiece tokenizer {own(base[batch]):.0f} → {own(new[batch]):.0f} µs/doc "
                         f"(×{own(new[batch]) / own(base[batch]):.2f})")
    body = "\n".join(lines)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_section("overhead-cpu", body)


if __name__ == "__main__":
    main()
