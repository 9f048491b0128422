"""Which Linear layers cost accuracy in int8: a trained pipeline's main dev
metric with every Linear layer quantised, then with one kind of layer at a
time kept out of int8 (``int8_exclude``, names within each layer; bf16 on a CPU with native bf16,
else fp32), on the full dev split.

    python benchmarks/int8_layers.py training/textcat/model-best corpus/textcat/dev.spacy

Prints a table (fp32 first); writes nothing. The kinds are named as in
BERT (``intermediate.dense``...); ``--exclude`` tries your own.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BERT_KINDS = {
    "every Linear layer int8": [],
    "all but the pooler": ["pooler.dense"],
    "all but the attention Linear layers": ["attention.self.query", "attention.self.key", "attention.self.value",
                                            "attention.output.dense"],
    "all but the FFN up-projections": ["intermediate.dense"],
    "all but the FFN down-projections": ["output.dense"],
    # one small layer: how far a change anywhere moves the metric (borderline examples flip)
    "all but layer 0's query": ["encoder.layer.0.attention.self.query"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained pipeline directory")
    parser.add_argument("dev", type=Path, help="dev .spacy file")
    parser.add_argument("--exclude", action="append", default=[],
                        help="comma-separated layer names to try kept out of int8 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    from bertflow.encoder.precision import quantize_int8
    from bertflow.training.evaluation import evaluate_nlp, read_examples
    from bertflow.compress.guard import encoder_models, load_with_precision, main_metrics

    nlp = load_with_precision(args.model, "int8")
    encoders = encoder_models(nlp)
    examples = read_examples(nlp, [args.dev])
    kinds = {"fp32": None, **BERT_KINDS}
    kinds.update({f"all but {spec}": spec.split(",") for spec in args.exclude})
    print(f"| {args.model} on {args.dev} ({len(examples)} examples) | metric | value | vs fp32 (points) | s |")
    print("|---|---|---|---|---|")
    base = {}
    for label, exclude in kinds.items():
        for model in encoders:
            model.attrs["precision"] = "fp32" if exclude is None else "int8"
            model.attrs["int8_model"] = None if exclude is None else quantize_int8(model.transformer, exclude)
        start = time.perf_counter()
        metrics = main_metrics(nlp, evaluate_nlp(nlp, examples, batch_size=args.batch_size)["heads"])
        seconds = time.perf_counter() - start
        for head, values in metrics.items():
            for key, value in values.items():
                base.setdefault((head, key), value)
                delta = 100 * (value - base[(head, key)])
                print(f"| {label} | {head} {key} | {value:.4f} | {delta:+.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
