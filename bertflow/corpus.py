"""Helpers every corpus converter and reader shares (no task-specific code).

``bertflow.Corpus.v1`` is spaCy's ``spacy.Corpus.v1`` that also hands the
encoder's *inputs* from the stored reference doc to the predicted doc. spaCy
builds each predicted doc afresh from the reference text, so without it a
pair input (``doc._.text_pair``: a question, a context, a second sentence)
would reach neither training nor evaluation.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.training import Corpus, Example
from spacy.util import registry

from .encoder.extensions import TEXT_PAIR  # importing it installs doc._.text_pair
from .errors import BertflowError

ENCODER_INPUTS = (TEXT_PAIR,)


@dataclass
class ConversionReport:
    """What a converter did, for the CLI and the user: ``summary()`` reads
    "SOURCE: N docs -> OUTPUT (details); K malformed rows skipped" and lists
    the first problems. A task's report subclasses it, adds its counters and
    overrides ``details``."""

    source: str
    output: str
    n_docs: int = 0
    n_skipped: int = 0
    problems: List[str] = field(default_factory=list)

    def details(self) -> str:
        """Task-specific counts for the summary's parentheses ("" for none)."""
        return ""

    def summary(self) -> str:
        details = self.details()
        text = (f"{self.source}: {self.n_docs} docs -> {self.output}{f' ({details})' if details else ''}; "
                f"{self.n_skipped} malformed rows skipped")
        return text + "".join(f"\n  {p}" for p in self.problems[:20])


def malformed_row(report: Any, path: Union[str, Path], line_no: int, problem: str, skip_bad: bool) -> None:
    """Handle one malformed input row: raise an error naming file and line, or
    with ``skip_bad`` count it on ``report`` (``n_skipped`` += 1, the message
    appended to ``problems``) so the conversion summary says what was skipped."""
    message = f"{path}:{line_no}: {problem}"
    if not skip_bad:
        raise BertflowError(message + " (use --skip-bad to skip such rows)")
    report.n_skipped += 1
    report.problems.append("skipped " + message)


def jsonl_rows(path: Union[str, Path]) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    """Read a JSONL file: ``(line number, object, None)`` per JSON object, or
    ``(line number, None, problem)`` for a line that is not valid JSON or not
    an object; blank lines are skipped. Converters pass problems on to
    ``malformed_row`` so every error names file and line."""
    with open(path, encoding="utf8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, None, f"invalid JSON ({err.msg} at column {err.colno})"
                continue
            if not isinstance(obj, dict):
                yield line_no, None, f"expected a JSON object, got {type(obj).__name__}"
                continue
            yield line_no, obj, None


def copy_encoder_inputs(eg: Example) -> Example:
    """Copy the encoder inputs (``doc._.text_pair``) from ``eg.reference`` to
    ``eg.predicted`` where the predicted doc has none. Returns ``eg``."""
    for name in ENCODER_INPUTS:
        value = getattr(eg.reference._, name)
        if value is not None and getattr(eg.predicted._, name) is None:
            setattr(eg.predicted._, name, value)
    return eg


@registry.readers("bertflow.Corpus.v1")
def create_corpus_reader(
    path: Optional[Path],
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> Callable[[Language], Iterable[Example]]:
    """``spacy.Corpus.v1`` (same arguments) whose examples keep the encoder's
    pair input: use it for every corpus whose docs carry ``doc._.text_pair``."""
    if path is None:
        raise BertflowError(
            "No corpus path: set [paths.train] / [paths.dev] in the config or pass "
            "--paths.train and --paths.dev to spacy train."
        )
    corpus = Corpus(path, gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter)

    def read(nlp: Language) -> Iterator[Example]:
        for eg in corpus(nlp):
            yield copy_encoder_inputs(eg)

    return read


@registry.batchers("bertflow.batch_by_group.v1")
def batch_by_group(size: int = 8, group_attr: str = "group") -> Callable[[Iterable[Example]], Iterator[List[Example]]]:
    """Batches of ``size`` groups that never split a group: examples whose
    reference docs share a value of ``doc._.<group_attr>`` (the candidates of
    one multiple-choice question, the two sentences of a pair) stay together,
    for heads whose loss compares them. An example without a value (or of
    another corpus) is a group of its own, so mixed corpora batch too. Groups
    keep the order in which their first example arrives (spaCy shuffles the
    examples per epoch)."""

    def batcher(items: Iterable[Example]) -> Iterator[List[Example]]:
        groups: Dict[object, List[Example]] = OrderedDict()
        for i, eg in enumerate(items):
            ref = eg.reference if isinstance(eg, Example) else eg
            key = getattr(ref._, group_attr) if ref.has_extension(group_attr) else None
            groups.setdefault(("group", key) if key is not None else ("single", i), []).append(eg)
        batch: List[Example] = []
        n = 0
        for members in groups.values():
            batch.extend(members)
            n += 1
            if n >= size:
                yield batch
                batch, n = [], 0
        if batch:
            yield batch

    return batcher
