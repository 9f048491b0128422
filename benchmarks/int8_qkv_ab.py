"""A/B of the int8 encoder with and without query/key/value fused into one GEMM
(``bertflow.encoder.model.fuse_qkv``): two copies of the three-head pipeline of
speed.py in one process, taking turns pass by pass at one batch size, so both
run under the same machine load.

    python benchmarks/int8_qkv_ab.py --batch 32 --rounds 8

Prints the median docs/s of each and their ratio per round; writes nothing.
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import speed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    args.gpu_id = -1
    import bertflow.encoder.model as encoder_model

    texts = speed.load_texts(args.data, args.n)
    fused = speed.bertflow_pipeline(args, texts, "int8")
    separate = speed.bertflow_pipeline(args, texts, "int8")
    fused("Warm-up: quantises.")
    model = separate.get_pipe("encoder").model
    real = encoder_model.fuse_qkv
    encoder_model.fuse_qkv = lambda module, skip=frozenset(): 0
    try:
        model.attrs["int8_model"] = encoder_model.quantize_int8(model.transformer)
    finally:
        encoder_model.fuse_qkv = real
    docs_s = {"fused": [], "separate": []}
    for _ in range(args.rounds):
        for name, nlp in (("fused", fused), ("separate", separate)):
            docs_s[name].append(len(texts) / speed.run_spacy(nlp, texts, args.batch, 1))
    ratios = [a / b for a, b in zip(docs_s["fused"], docs_s["separate"])]
    print(f"batch {args.batch}, {args.rounds} rounds: fused {statistics.median(docs_s['fused']):.1f} docs/s, "
          f"separate {statistics.median(docs_s['separate']):.1f} docs/s (medians); fused / separate "
          f"x{statistics.median(ratios):.2f} (rounds x{min(ratios):.2f}-x{max(ratios):.2f})")


if __name__ == "__main__":
    main()
