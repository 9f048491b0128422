"""Does the decoder explain a gap? Train bertflow_ner as ner_conll.py does (one
lr, one budget), then score the same model's dev probabilities two ways:
bertflow's constrained Viterbi (what `doc.ents` gets) and the HF baseline's
reading (argmax per token, a stray I- opens an entity, as conlleval does).

    python benchmarks/ner_decoding.py --lr 2e-5 --steps 450

Prints one JSON line; writes nothing to BENCHMARKS.md.
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import ner_conll as nc  # noqa: E402
from common import benchmark_parser  # noqa: E402


def main():
    parser = benchmark_parser(__doc__, "conll2003", batch=32, lr=2e-5)
    parser.add_argument("--steps", type=int, default=450)
    args = parser.parse_args()
    from spacy.tokens import Doc

    from bertflow_ner.convert import iob_spans
    train = nc.read_conll(args.data / "train.txt", args.train_limit)
    dev = nc.read_conll(args.data / "dev.txt", args.dev_limit)
    gold = [iob_spans(t) for _, t in dev]
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        nc.write_docbins(wd, train, dev)
        nlp, _ = nc.train_spacy(args, nc.spacy_config(wd, False), wd, "bertflow")
    docs = list(nlp.pipe((Doc(nlp.vocab, words=w) for w, _ in dev), disable=["ner"]))
    ner = nlp.get_pipe("ner")
    vit, arg = [], []
    for i in range(0, len(docs), args.eval_batch):
        chunk = docs[i:i + args.eval_batch]
        vit += [iob_spans(t) for t in ner.tag_names(ner.predict(chunk))]
        for p in ner.model.predict(chunk):
            arg.append(iob_spans([ner.tags[j] for j in ner.model.ops.to_numpy(p).argmax(-1)]))
    print(json.dumps({"lr": args.lr, "viterbi": nc.prf(gold, vit), "argmax_conlleval": nc.prf(gold, arg)}))


if __name__ == "__main__":
    main()
