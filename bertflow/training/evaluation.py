"""Scoring a pipeline's heads on .spacy data: each head on the examples annotated for it."""
import time
from pathlib import Path
from typing import Dict, List

from bertflow.errors import BertflowError, Errors


def read_examples(nlp, data: List[Path]) -> list:
    """The examples of one or more .spacy files, for ``nlp``."""
    from bertflow.data.corpus import create_corpus_reader

    examples = []
    for path in data:
        if not Path(path).exists():
            raise BertflowError(Errors.E056.format(path=path))
        examples.extend(create_corpus_reader(Path(path))(nlp))  # .txt/.jsonl: raw text, for a masked-LM head
    if not examples:
        raise BertflowError(Errors.E055.format(data=', '.join(map(str, data))))
    return examples


def evaluate_nlp(nlp, examples: list, *, batch_size: int = 64) -> dict:
    """Run ``nlp`` once over the examples; score each head on those annotated for it."""
    from spacy.training import Example

    start = time.perf_counter()
    docs = list(nlp.pipe((eg.predicted for eg in examples), batch_size=batch_size))
    elapsed = time.perf_counter() - start
    scored = [Example(doc, eg.reference) for doc, eg in zip(docs, examples)]
    heads: Dict[str, dict] = {}
    for name, pipe in nlp.pipeline:
        if getattr(pipe, "scorer", None) is None or not hasattr(pipe, "score"):
            continue
        annotated = [eg for eg in scored if pipe.is_annotated(eg)] if hasattr(pipe, "is_annotated") else scored
        if not annotated:
            continue  # nothing in the data for this head
        scores = pipe.score(annotated)
        if scores:
            heads[name] = {"n_examples": len(annotated), **scores}
    return {"n_examples": len(examples), "docs_per_s": len(examples) / max(elapsed, 1e-9), "heads": heads}
