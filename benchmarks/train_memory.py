"""Memory while training: minilm-l6 + bertflow_ner on CoNLL-2003 train,
stepped as ``spacy train`` steps them (``nlp.update(sgd=False)``, then every
component's ``finish_update``), with bertflow.AdamW.v1, batch 32. RSS is
sampled every 20 steps, once with the encoder's periodic heap trim (every
``TRIM_EVERY`` steps, the default) and once with it off, each in its own
process. Without the trim glibc keeps the freed activations of every batch
shape and the process grows until the OS kills it.

    python benchmarks/train_memory.py [--steps 200]

Writes its section of BENCHMARKS.md.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, rss_mb, write_section  # noqa: E402


def worker(args) -> None:
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.util import fix_random_seed
    from thinc.api import registry

    import bertflow.encoder.component as component
    from ner_conll import gold_doc, read_conll

    if not args.trim:
        component.TRIM_EVERY = 10 ** 9
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config={"model": {"name": args.encoder}})
    nlp.add_pipe("bertflow_ner", name="ner")
    examples = []
    for words, tags in read_conll(args.data / "train.txt", args.steps * 32):
        examples.append(Example(Doc(nlp.vocab, words=words), gold_doc(nlp.vocab, words, tags)))
    nlp.initialize(lambda: examples[:200])
    optimizer = registry.resolve({"o": {"@optimizers": "bertflow.AdamW.v1", "learn_rate": 5e-5}})["o"]
    samples, start = [(0, rss_mb())], time.perf_counter()
    for step in range(args.steps):
        batch = examples[step * 32: (step + 1) * 32]
        nlp.update(batch, sgd=False, drop=0.1)
        for _, proc in nlp.pipeline:
            proc.finish_update(optimizer)
        if (step + 1) % 20 == 0:
            samples.append((step + 1, rss_mb()))
    print(json.dumps({"samples": samples, "s_per_step": (time.perf_counter() - start) / args.steps}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trim", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    runs = {}
    for trim in (1, 0):
        out = subprocess.run([sys.executable, __file__, "--worker", "--trim", str(trim), "--steps", str(args.steps),
                              "--data", str(args.data), "--encoder", args.encoder],
                             capture_output=True, text=True, check=True).stdout
        runs[trim] = json.loads(out.strip().splitlines()[-1])
        print(trim, runs[trim], flush=True)
    from bertflow.encoder.component import TRIM_EVERY

    steps = [s for s, _ in runs[1]["samples"]]
    header = " | ".join(f"step {s}" for s in steps)
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{mb:,.0f}" for _, mb in runs[trim]["samples"]) + f" | {runs[trim]['s_per_step']:.3f} |"
        for trim, name in ((0, "trim off"), (1, f"trim every {TRIM_EVERY} steps (default)")))
    body = f"""## Memory while training (CPU)

`python benchmarks/train_memory.py --steps {args.steps}` — {args.encoder} + `bertflow_ner`, CoNLL-2003 train, batch 32,
bertflow.AdamW.v1, stepped as `spacy train` steps; resident memory (MB) of the training process.
Machine: {machine()}.

| encoder heap trim | {header} | s/step |
|---|{"---|" * len(steps)}---|
{rows}
"""
    if not args.no_write:
        write_section("train-memory", body)
    print(body)


if __name__ == "__main__":
    main()
