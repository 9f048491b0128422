"""``bertflow check MODEL``: odd text and round-trips against any pipeline.

The checks are task-agnostic, so third-party heads are covered as long as
they write spaCy's standard outputs:

- **fuzz**: texts of each hard class (empty, whitespace-only, control and
  zero-width characters, combining marks, right-to-left scripts, CJK, emoji
  and ZWJ sequences, a 100,000-character text, a single token of thousands of
  wordpieces, random unicode), alone and as a ``doc._.text_pair`` question.
  No exception; every span in ``doc.ents`` and in every ``doc.spans`` group
  slices the text exactly; ``doc.cats`` are finite probabilities that sum to
  1 over an exclusive head's labels; ``doc.vector`` is finite.
- **round-trips**: ``to_bytes``/``from_bytes``, ``to_disk``/``from_disk`` and
  pickle of the whole pipeline give the same outputs on the same texts.
"""
import math
import pickle
import random
import tempfile
import unicodedata
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy

from bertflow.files.loading import load_pipeline

# What each fuzz class is made of; ``fuzz_text`` draws from them.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
CONTROL = "".join(chr(c) for c in list(range(0, 32)) + list(range(127, 160)))
COMBINING = "\u0301\u0308\u0327\u0336\u20dd"
RTL = "שלום עולם مرحبا بالعالم"
CJK = "日本語のテキスト中文文本한국어"
EMOJI = ["🙂", "👍🏽", "👩\u200d👩\u200d👧", "🏳️\u200d🌈", "🇯🇵", "❤️"]
WORDS = "the cat sat on a mat Paris London Apple who where is was good bad".split()

FUZZ_CLASSES: Dict[str, Callable[[random.Random], str]] = {
    "empty": lambda rng: "",
    "whitespace only": lambda rng: "".join(rng.choice(" \t\n\r\u00a0\u3000") for _ in range(rng.randint(1, 20))),
    "control characters": lambda rng: _mix(rng, CONTROL),
    "zero-width": lambda rng: _mix(rng, ZERO_WIDTH),
    "combining marks": lambda rng: "".join(rng.choice(WORDS) + rng.choice(COMBINING) * rng.randint(1, 6) + " "
                                           for _ in range(rng.randint(1, 8))),
    "right-to-left": lambda rng: " ".join(rng.sample(RTL.split(), k=rng.randint(1, 4))) + " " + rng.choice(WORDS),
    "CJK": lambda rng: "".join(rng.choice(CJK) for _ in range(rng.randint(1, 200))),
    "emoji and ZWJ": lambda rng: " ".join(rng.choice(EMOJI + WORDS) for _ in range(rng.randint(1, 20))),
    "100,000 characters": lambda rng: (" ".join(rng.choice(WORDS) for _ in range(25_000)))[:100_000],
    "one token of thousands of wordpieces": lambda rng: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                                               for _ in range(rng.randint(3_000, 6_000))),
    "no wordpieces (zero-width and combining marks only)": lambda rng: "".join(rng.choice(ZERO_WIDTH + COMBINING)
                                                                 for _ in range(rng.randint(1, 10))),
    "random unicode": lambda rng: "".join(_random_char(rng) for _ in range(rng.randint(1, 300))),
}


def _mix(rng: random.Random, odd: str) -> str:
    return "".join(rng.choice(WORDS) + " " if rng.random() < 0.5 else rng.choice(odd)
                   for _ in range(rng.randint(1, 30)))


def _random_char(rng: random.Random) -> str:
    while True:
        char = chr(rng.randint(0, 0x2FFFF))
        if unicodedata.category(char) != "Cs":  # lone surrogates can't be encoded to UTF-8
            return char


def fuzz_texts(n_per_class: int, seed: int = 0) -> Iterator[Tuple[str, str]]:
    """(class name, text) pairs: ``n_per_class`` of each class (one of the huge ones)."""
    rng = random.Random(seed)
    for name, make in FUZZ_CLASSES.items():
        count = 1 if name in ("100,000 characters", "one token of thousands of wordpieces") else n_per_class
        for _ in range(count):
            yield name, make(rng)


def doc_problems(doc, nlp=None) -> List[str]:
    """What is wrong with a processed doc's outputs (empty list: nothing)."""
    problems = []
    text = doc.text
    groups = [("ents", doc.ents)] + [(f"spans[{key!r}]", group) for key, group in doc.spans.items()]
    for where, spans in groups:
        for span in spans:
            if not (0 <= span.start_char <= span.end_char <= len(text)) or text[span.start_char: span.end_char] != span.text:
                problems.append(f"{where}: span {span.start_char}-{span.end_char} does not slice the text")
    for label, value in doc.cats.items():
        if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            problems.append(f"cats[{label!r}] = {value!r} is not a probability")
    for name, pipe in (nlp.pipeline if nlp is not None else []):
        labels = getattr(pipe, "labels", ())
        if getattr(pipe, "exclusive", False) and labels and all(label in doc.cats for label in labels):
            total = sum(doc.cats[label] for label in labels)
            if abs(total - 1.0) > 1e-4:
                problems.append(f"{name}: exclusive cats sum to {total:.6f}, not 1")
    if doc.has_vector and not numpy.isfinite(numpy.asarray(doc.vector)).all():
        problems.append("doc.vector has non-finite values")
    return problems


def outputs(doc) -> tuple:
    """A comparable summary of a doc's outputs."""
    vector = numpy.round(numpy.asarray(doc.vector, dtype="float64"), 5).tolist() if doc.has_vector else None
    return (
        tuple(sorted((k, round(v, 5)) for k, v in doc.cats.items())),
        tuple((e.start_char, e.end_char, e.label_) for e in doc.ents),
        tuple((key, tuple((s.start_char, s.end_char, s.label_) for s in group)) for key, group in sorted(doc.spans.items())),
        vector,
    )


ROUND_TRIP_TEXTS = ["Apple was founded by Steve Jobs in Cupertino.", "A terrible, boring film.",
                    "日本語 🙂 text", "Paris is the capital of France. " * 40]
QUESTION = "Who founded Apple?"


def _docs(nlp, texts: List[str], question: Optional[str] = None):
    docs = [nlp.make_doc(t) for t in texts]
    if question is not None and docs and docs[0].has_extension("text_pair"):
        for doc in docs:
            doc._.text_pair = question
    return list(nlp.pipe(docs))


def round_trips(nlp) -> List[Tuple[str, bool, str]]:
    """Outputs after to_bytes/from_bytes, to_disk/from_disk and pickle, compared with the original's."""
    import spacy

    expected = [outputs(d) for d in _docs(nlp, ROUND_TRIP_TEXTS, QUESTION)]
    results = []

    def from_bytes():
        return spacy.util.get_lang_class(nlp.lang).from_config(nlp.config).from_bytes(nlp.to_bytes())

    def from_disk():
        with tempfile.TemporaryDirectory() as tmp:
            nlp.to_disk(Path(tmp) / "pipeline")
            return spacy.load(Path(tmp) / "pipeline")

    for name, load in (("to_bytes/from_bytes", from_bytes), ("to_disk/from_disk", from_disk),
                       ("pickle", lambda: pickle.loads(pickle.dumps(nlp)))):
        try:
            got = [outputs(d) for d in _docs(load(), ROUND_TRIP_TEXTS, QUESTION)]
        except Exception as err:  # noqa: BLE001  (reported as a failed check)
            results.append((name, False, f"{type(err).__name__}: {err}"))
            continue
        same = got == expected
        results.append((name, same, "same outputs" if same else "outputs differ after the round-trip"))
    return results


def check_pipeline(model: Union[str, Path, "object"], *, n_per_class: int = 20, seed: int = 0,
                   gpu_id: int = -1, progress: Optional[Callable[[str], None]] = None) -> List[Tuple[str, bool, str]]:
    """Run the fuzz classes (alone and as questions) and the round-trips.

    RETURNS (List[Tuple[str, bool, str]]): (check, passed, detail) rows.
    """
    nlp = load_pipeline(model, gpu_id) if isinstance(model, (str, Path)) else model
    by_class: Dict[str, List[str]] = {}
    for name, text in fuzz_texts(n_per_class, seed):
        by_class.setdefault(name, []).append(text)
    rows = []
    for name, texts in by_class.items():
        if progress:
            progress(name)
        failures = []
        for question in (None, "Where?"):
            try:
                docs = _docs(nlp, texts, question)
            except Exception as err:  # noqa: BLE001
                failures.append(f"{type(err).__name__}: {str(err)[:200]}")
                continue
            if len(docs) != len(texts):
                failures.append(f"{len(texts) - len(docs)} docs lost")
            for doc in docs:
                failures.extend(doc_problems(doc, nlp))
        # the class's texts as questions about an ordinary context
        try:
            contexts = [nlp.make_doc("Apple was founded by Steve Jobs in Cupertino.") for _ in texts]
            for doc, text in zip(contexts, texts):
                if doc.has_extension("text_pair"):
                    doc._.text_pair = text
            for doc in nlp.pipe(contexts):
                failures.extend(doc_problems(doc, nlp))
        except Exception as err:  # noqa: BLE001
            failures.append(f"as a question: {type(err).__name__}: {str(err)[:200]}")
        detail = f"{len(texts)} texts" + (f"; {len(failures)} problems, first: {failures[0]}" if failures else "")
        rows.append((f"fuzz: {name}", not failures, detail))
    if progress:
        progress("round-trips")
    rows.extend((f"round-trip: {name}", ok, detail) for name, ok, detail in round_trips(nlp))
    return rows
