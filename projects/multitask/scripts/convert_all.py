"""Convert the four datasets of the multitask project in one process.

The same conversions as ten `bertflow convert TASK IN OUT` calls (each with
the task plugin's converter, through `bertflow.convert.convert`), without
paying the start-up of a Python process with spaCy and torch ten times.

    python scripts/convert_all.py DATA_DIR CORPUS_DIR
"""
import sys
from pathlib import Path

from bertflow.convert import convert

LABELS = {"0": "NEGATIVE", "1": "POSITIVE"}
JOBS = [  # task, input file in DATA_DIR, output in CORPUS_DIR, the converter's options
    ("textcat", "sst2_train.tsv", "textcat/train.spacy", {"label_map": LABELS}),
    ("textcat", "sst2_dev.tsv", "textcat/dev.spacy", {"label_map": LABELS}),
    ("ner", "conll_train.txt", "ner/train.spacy", {}),
    ("ner", "conll_dev.txt", "ner/dev.spacy", {}),
    ("qa", "squad_train.json", "qa/train.spacy", {}),
    ("qa", "squad_dev.json", "qa/dev.spacy", {}),
    ("similarity", "stsb_train.tsv", "similarity/train.spacy", {"mode": "bi"}),
    ("similarity", "stsb_dev.tsv", "similarity/dev.spacy", {"mode": "bi"}),
    ("pair_classifier", "stsb_train.tsv", "pair/train.spacy", {}),
    ("pair_classifier", "stsb_dev.tsv", "pair/dev.spacy", {}),
]


def main(data_dir: str, corpus_dir: str) -> None:
    for task, source, target, options in JOBS:
        print(convert(task, Path(data_dir) / source, Path(corpus_dir) / target, **options).summary())


if __name__ == "__main__":
    from bertflow.cli import run_or_fail

    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run_or_fail(main, *sys.argv[1:])
