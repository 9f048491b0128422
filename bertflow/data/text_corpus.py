"""``bertflow.TextCorpus.v1``: raw text straight into training, no DocBin.

Self-supervised heads (masked LM, and the next-sentence task beside it) train
on unlabelled text. This reader streams it from ``.txt`` (one document per
line, or blank-line separated paragraphs) and ``.jsonl`` (``{"text": ...}``)
files of any size: each pass reads the files again, so nothing but the
current document is held (use ``max_epochs = -1`` in ``[training]`` for
spaCy's streaming mode when the corpus does not fit in memory). Every
reference doc is marked ``doc._.raw_text``; supervised heads find no
annotation in them, so the reader mixes into a multitask corpus.

A bad line (not UTF-8, not JSON, no text field) is an error naming its file
and line, or with ``skip_bad`` is skipped and counted in the pass's report.
"""
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from bertflow.files.raw import jsonl_rows, text_lines
from bertflow.encoder.extensions import RAW_TEXT, TEXT_PAIR
from bertflow.errors import BertflowError, Errors, logger

TEXT_SUFFIXES = (".txt", ".jsonl")
REPORT_EVERY_S = 30.0  # a long pass says how far it got this often (stderr)

# documents as lists of sentences, a seeded rng -> (sentence a, sentence b, reference doc._ values)
PairMaker = Callable[[Iterable[List[str]], random.Random], Iterator[Tuple[str, str, Dict[str, Any]]]]


def text_files(path: Union[str, Path]) -> List[Path]:
    """The ``.txt``/``.jsonl`` files of ``path`` (a file, or a folder read recursively in name order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    raise BertflowError(Errors.E099.format(path=path, err="no such file or folder", field="text"))


def read_texts(path: Union[str, Path], *, field: str = "text", paragraphs: bool = False, skip_bad: bool = False,
               report: Optional[dict] = None) -> Iterator[str]:
    """Each document's text in ``path``: a line of a ``.txt`` file (with
    ``paragraphs``: lines up to a blank line, joined by spaces), or the
    ``field`` of a ``.jsonl`` object. Blank documents are skipped; a bad line
    raises, or with ``skip_bad`` is counted in ``report["skipped"]`` (its first
    problems in ``report["problems"]``)."""
    report = {} if report is None else report
    report.setdefault("skipped", 0)
    report.setdefault("problems", [])

    def bad(file: Path, line_no: int, problem: str) -> None:
        if not skip_bad:
            raise BertflowError(Errors.E100.format(path=file, line=line_no, problem=problem))
        report["skipped"] += 1
        if len(report["problems"]) < 10:
            report["problems"].append(f"{file}:{line_no}: {problem}")

    for file in text_files(path):
        if file.suffix == ".jsonl":
            for line_no, obj, problem in jsonl_rows(file):
                if problem is None:
                    value = obj.get(field)
                    if not isinstance(value, str):
                        problem = (f"no {field!r} field" if value is None
                                   else f"{field!r} is a {type(value).__name__}, not a string")
                if problem is not None:
                    bad(file, line_no, problem)
                elif value.strip():
                    yield value
            continue
        lines: List[str] = []
        for line_no, line, problem in text_lines(file):
            if problem is not None:
                bad(file, line_no, problem)
                continue
            if not paragraphs:
                if line.strip():
                    yield line
            elif line.strip():
                lines.append(line.strip())
            elif lines:
                yield " ".join(lines)
                lines = []
        if lines:
            yield " ".join(lines)


def sentences_of(nlp: Language, text: str, sentencizer: Callable[[Doc], Doc]) -> List[str]:
    """The sentences of ``text`` by ``sentencizer`` (spaCy's rule-based
    ``Sentencizer``: punctuation) over the pipeline's tokens."""
    doc = sentencizer(nlp.make_doc(text))
    return [s.text.strip() for s in doc.sents if s.text.strip()]


def _raw_example(nlp: Language, text: str, pair: Optional[str] = None,
                 values: Optional[Dict[str, Any]] = None) -> Example:
    predicted = nlp.make_doc(text)
    reference = predicted.copy()
    setattr(reference._, RAW_TEXT, True)
    if pair is not None:
        setattr(predicted._, TEXT_PAIR, pair)
        setattr(reference._, TEXT_PAIR, pair)
    for name, value in (values or {}).items():  # the pair maker's annotations, e.g. doc._.is_next
        setattr(reference._, name, value)
    return Example(predicted, reference)


def _chunks(doc: Doc, max_length: int) -> Iterator[Doc]:
    """``doc`` cut into pieces of at most ``max_length`` tokens (0: whole)."""
    if not max_length or len(doc) <= max_length:
        yield doc
        return
    for start in range(0, len(doc), max_length):
        yield doc[start: start + max_length].as_doc()


@registry.readers("bertflow.TextCorpus.v1")
def create_text_corpus_reader(
    path: Optional[Path],
    field: str = "text",
    paragraphs: bool = False,
    max_length: int = 0,
    limit: int = 0,
    skip_bad: bool = False,
    pairs: Optional[PairMaker] = None,
    seed: int = 0,
) -> Callable[[Language], Iterable[Example]]:
    """Unlabelled text for self-supervised heads, streamed from ``.txt``/``.jsonl``.

    path (Path): a file or a folder of ``.txt``/``.jsonl`` files.
    field (str): the text field of ``.jsonl`` objects. Default "text".
    paragraphs (bool): in ``.txt`` files a document runs to the next blank
        line (its lines joined by spaces); default false: one per line.
    max_length (int): documents longer than this many spaCy tokens are cut
        into pieces of that length (all of them kept); 0: whole documents
        (the encoder windows long ones).
    limit (int): stop after this many examples per pass (0: all): a quick dev set.
    skip_bad (bool): skip (and count) lines that are not UTF-8, not JSON or
        have no text, instead of stopping at the first with its file and line.
    pairs (Optional[PairMaker]): yield sentence pairs instead of documents:
        ``pairs(documents, rng)`` gets each document as its list of sentences
        (spaCy's rule-based sentencizer over the pipeline's tokens) and yields
        ``(a, b, values)``: each doc is sentence ``b`` with ``doc._.text_pair``
        = ``a``, and ``values`` set as extension attributes of its reference
        doc (a self-supervised head's labels, which the head's plugin
        registers). E.g. ``bertflow_mlm.next_sentence_pairs.v1``, BERT's
        next-sentence task. None (default): documents.
    seed (int): seed of ``pairs``' random draws; pass k of a run uses ``seed + k``,
        so epochs differ and a run is reproducible.
    """
    if path is None:
        raise BertflowError(Errors.E099.format(path=path, err="no path given", field=field))
    files = text_files(path)
    passes = [0]

    def read(nlp: Language) -> Iterator[Example]:
        report: dict = {}
        n = 0
        started = last = time.perf_counter()
        texts = read_texts(path, field=field, paragraphs=paragraphs, skip_bad=skip_bad, report=report)
        if pairs is not None:
            from spacy.pipeline import Sentencizer

            rng, sentencizer = random.Random(seed + passes[0]), Sentencizer()
            made = pairs((sentences_of(nlp, t, sentencizer) for t in texts), rng)
            examples = (_raw_example(nlp, b, pair=a, values=values) for a, b, values in made)
        else:
            examples = (_raw_example(nlp, chunk.text) for text in texts
                        for chunk in _chunks(nlp.make_doc(text), max_length))
        passes[0] += 1
        for eg in examples:
            yield eg
            n += 1
            if limit and n >= limit:
                break
            now = time.perf_counter()
            if now - last > REPORT_EVERY_S:
                logger.info("text corpus %s: %s docs read (%.0f s)", path, f"{n:,}", now - started)
                last = now
        if report.get("skipped"):
            problems = "".join(f"\n  {p}" for p in report["problems"])
            logger.warning("text corpus %s: %s bad lines skipped%s", path, report["skipped"], problems)
        if n == 0:
            why = f" ({len(files)} files, {report.get('skipped', 0)} bad lines skipped)"
            raise BertflowError(Errors.E101.format(path=path, why=why, field=field))

    return read
