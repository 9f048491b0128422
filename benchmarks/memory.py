"""Memory over a long stream: annotate N texts (default 100,000) with
``bertflow annotate`` and sample the process's RSS as it goes. Memory must
stay flat: no growth per doc once the pipeline is warm.

    python benchmarks/memory.py MODEL [--n 100000]
    python benchmarks/memory.py --tiny          # a 4-head pipeline on the tiny random BERT

The texts cycle through the real SST-2 and CoNLL-2003 dev sentences, each
made unique with its row number. Writes its section of BENCHMARKS.md.
"""
import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, rss_mb, write_section  # noqa: E402
from speed import load_texts  # noqa: E402


def tiny_pipeline(workdir: Path) -> Path:
    """encoder + textcat + ner + qa + similarity on the tiny random BERT, initialised and saved."""
    import spacy
    from spacy.tokens import Doc, Span
    from spacy.training import Example

    from bertflow.testing.fixtures import tiny_encoder_config, write_tiny_bert

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(write_tiny_bert(workdir / "bert")))
    for head in ("textcat", "ner", "qa", "similarity"):
        nlp.add_pipe(f"bertflow_{head}", name=head)
    ref = Doc(nlp.vocab, words="john lives in paris".split())
    ref.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    ref.set_ents([Span(ref, 0, 1, label="PER")], default="outside")
    nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=[t.text for t in ref]), ref)])
    nlp.to_disk(workdir / "pipeline")
    return workdir / "pipeline"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="pipeline directory or package (or --tiny)")
    parser.add_argument("--tiny", action="store_true", help="use a 4-head pipeline on the tiny random BERT")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.model and not args.tiny:
        parser.error("give MODEL or --tiny")

    from bertflow.inference.annotate import annotate

    base = load_texts(args.data, 2000)
    workdir = Path(tempfile.mkdtemp(prefix="bertflow-memory-"))
    model = str(tiny_pipeline(workdir)) if args.tiny else args.model
    inputs = workdir / "texts.jsonl"
    with open(inputs, "w", encoding="utf8") as f:
        for i in range(args.n):
            f.write(json.dumps({"id": i, "text": f"{base[i % len(base)]} ({i})"}) + "\n")

    samples, stop = [], threading.Event()
    start = time.perf_counter()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter() - start, rss_mb()))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    report = annotate(model, inputs, workdir / "out.jsonl", batch_size=args.batch_size, progress=True)
    stop.set()
    sampler.join()
    elapsed = time.perf_counter() - start
    assert report.n_done + report.n_errors == args.n, report.summary(workdir / "out.jsonl")

    # RSS at each tenth of the run (throughput is steady, so time ~ docs)
    marks = []
    for tenth in range(1, 11):
        t = elapsed * tenth / 10
        marks.append(max(r for s, r in samples if s <= t))
    warm = marks[1]  # after the first 10%: model loaded, buffers allocated
    growth = marks[-1] - warm
    per_10k = growth / (args.n * 0.8 / 10_000)
    name = "tiny 4-head pipeline (random 2-layer, 32-wide BERT)" if args.tiny else model
    body = "\n".join([
        "## Memory over a long stream",
        "",
        f"`python benchmarks/memory.py {'--tiny' if args.tiny else 'MODEL'} --n {args.n}` — `bertflow annotate` of "
        f"{args.n:,} texts (real SST-2/CoNLL dev sentences, each made unique) through the {name}, batch "
        f"{args.batch_size}; RSS sampled every 0.5 s. {report.n_done:,} rows annotated, {report.n_errors} errors, "
        f"{args.n / elapsed:,.0f} rows/s.",
        f"Machine: {machine()}.",
        "",
        "| progress | " + " | ".join(f"{10 * i}%" for i in range(1, 11)) + " |",
        "|---|" + "---|" * 10,
        "| peak RSS so far (MB) | " + " | ".join(f"{m:.0f}" for m in marks) + " |",
        "",
        f"From 20% to 100% of the stream RSS changed by {growth:+.1f} MB ({per_10k:+.2f} MB per 10,000 texts); "
        f"over the second half (50% to 100%) by {marks[-1] - marks[4]:+.1f} MB "
        f"({(marks[-1] - marks[4]) / (args.n * 0.5 / 10_000):+.2f} MB per 10,000 texts). annotate runs each chunk of "
        f"10,000 rows inside `nlp.memory_zone()`, so the texts' strings leave the vocab after their chunk.",
    ])
    print(body)
    if not args.no_write:
        write_section("memory", body)


if __name__ == "__main__":
    main()
