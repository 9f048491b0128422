"""Helpers every corpus converter and reader shares (no task-specific code).

``bertflow.Corpus.v1`` is spaCy's ``spacy.Corpus.v1`` that also hands the
encoder's *inputs* from the stored reference doc to the predicted doc. spaCy
builds each predicted doc afresh from the reference text, so without it a
pair input (``doc._.text_pair``: a question, a context, a second sentence)
would reach neither training nor evaluation.
"""
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Corpus, Example
from spacy.util import registry

from bertflow.encoder.extensions import TEXT_PAIR  # importing it installs doc._.text_pair
from bertflow.errors import BertflowError, Errors, one_line

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


def malformed_row(report: Any, path: Union[str, Path], line_no: Union[int, str], problem: str, skip_bad: bool) -> None:
    """Handle one malformed input row: raise an error naming file and line (or,
    for a nested format such as JSON, the record's place: ``data[3].qas[1]``), or
    with ``skip_bad`` count it on ``report`` (``n_skipped`` += 1, the message
    appended to ``problems``) so the conversion summary says what was skipped."""
    message = f"{path}:{line_no}: {problem}"
    if not skip_bad:
        raise BertflowError(message + " (use --skip-bad to skip such rows)")
    report.n_skipped += 1
    report.problems.append("skipped " + message)


def copy_encoder_inputs(eg: Example) -> Example:
    """Copy the encoder inputs (``doc._.text_pair``) from ``eg.reference`` to
    ``eg.predicted`` where the predicted doc has none. Returns ``eg``."""
    for name in ENCODER_INPUTS:
        value = getattr(eg.reference._, name)
        if value is not None and getattr(eg.predicted._, name) is None:
            setattr(eg.predicted._, name, value)
    return eg


# reference docs per .spacy file (and reading options), shared by every reader of the file in this process:
# spacy train resolves [corpora] twice (initialize, then the training loop)
_REFERENCES: "OrderedDict[tuple, Tuple[Any, List[Doc]]]" = OrderedDict()
_KEEP_FILES = 16


def read_examples(corpus: Corpus, path: Path, nlp: Language) -> Iterator[Example]:
    """``corpus(nlp)``, with a missing or unreadable file as one error naming it."""
    if not Path(path).exists():
        raise BertflowError(Errors.E133.format(path=path))
    try:
        yield from corpus(nlp)
    except BertflowError:
        raise
    except Exception as err:  # noqa: BLE001  (DocBin and msgpack errors: name the file, not the parser)
        raise BertflowError(Errors.E134.format(path=path, first=one_line(err))) from None


def _references(corpus: Corpus, path: Path, nlp: Language, options: tuple) -> List[Doc]:
    try:
        files = [path] if path.is_file() else sorted(path.rglob("*.spacy"))
        key = (str(path.resolve()), tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files), options)
    except OSError:
        return [eg.reference for eg in read_examples(corpus, path, nlp)]
    kept = _REFERENCES.get(key)
    if kept is None or kept[0] is not nlp.vocab:
        kept = _REFERENCES[key] = (nlp.vocab, [eg.reference for eg in read_examples(corpus, path, nlp)])
        while len(_REFERENCES) > _KEEP_FILES:
            _REFERENCES.popitem(last=False)
    _REFERENCES.move_to_end(key)
    return kept[1]


@registry.readers("bertflow.Corpus.v1")
def create_corpus_reader(
    path: Optional[Path],
    gold_preproc: bool = False,
    max_length: int = 0,
    limit: int = 0,
    augmenter: Optional[Callable] = None,
) -> Callable[[Language], Iterable[Example]]:
    """``spacy.Corpus.v1`` (same arguments) whose examples keep the encoder's
    pair input: use it for every corpus whose docs carry ``doc._.text_pair``.
    A ``.txt`` or ``.jsonl`` path is raw text, read by ``bertflow.TextCorpus.v1``
    with its defaults (one document per line).

    The reference docs are read from disk once per process and kept (without
    an augmenter): every later pass (each head's ``initialize``, each epoch,
    each dev evaluation) builds fresh examples from them. Reading a ``.spacy``
    file is slow when docs carry extension values (srsly looks up its msgpack
    decoders for each doc), and a multitask run reads its corpora many times.
    """
    if path is None:
        raise BertflowError(
            Errors.E050
        )
    from bertflow.data.text_corpus import TEXT_SUFFIXES, create_text_corpus_reader

    if Path(path).suffix in TEXT_SUFFIXES:  # raw text: for self-supervised heads (masked LM)
        return create_text_corpus_reader(Path(path), max_length=max_length, limit=limit)
    corpus = Corpus(path, gold_preproc=gold_preproc, max_length=max_length, limit=limit, augmenter=augmenter)

    def read(nlp: Language) -> Iterator[Example]:
        if augmenter is not None or gold_preproc:
            for eg in read_examples(corpus, Path(path), nlp):
                yield copy_encoder_inputs(eg)
            return
        for reference in _references(corpus, Path(path), nlp, (max_length, limit)):
            if reference.has_unknown_spaces:  # as spacy.Corpus: keep the reference's own tokens
                predicted = Doc(nlp.vocab, words=[t.text for t in reference],
                                spaces=[bool(t.whitespace_) for t in reference])
            else:
                predicted = nlp.make_doc(reference.text)
            yield copy_encoder_inputs(Example(predicted, reference))

    return read


@registry.batchers("bertflow.batch_by_group.v1")
def batch_by_group(size: int = 8, group_attr: str = "group",
                   buffer: int = 0) -> Callable[[Iterable[Example]], Iterator[List[Example]]]:
    """Batches of ``size`` groups that never split a group: examples whose
    reference docs share a value of ``doc._.<group_attr>`` (the candidates of
    one multiple-choice question, the two sentences of a pair) stay together,
    for heads whose loss compares them. An example without a value (or of
    another corpus) is a group of its own, so mixed corpora batch too. Groups
    keep the order in which their first example arrives (spaCy shuffles the
    examples per epoch).

    buffer (int): 0 reads the whole epoch before the first batch, so members
        of a group may arrive anywhere in it. A streamed corpus
        (``max_epochs = -1``) never ends: give it a buffer, e.g. 10000. A group
        then closes once ``buffer`` more examples have been read after its
        first member, and batches of closed groups come out as the stream
        flows; only members that arrive later than that are batched apart.
    """
    if buffer < 0:
        raise BertflowError(Errors.E165.format(buffer=buffer))

    def take(groups: Dict[object, List[Example]], n: int) -> List[Example]:
        return [eg for key in list(itertools.islice(groups, n)) for eg in groups.pop(key)]

    def batcher(items: Iterable[Example]) -> Iterator[List[Example]]:
        groups: Dict[object, List[Example]] = OrderedDict()  # in the order their first member arrived
        opened: Dict[object, int] = {}  # the index of each group's first member
        for i, eg in enumerate(items):
            ref = eg.reference if isinstance(eg, Example) else eg
            key = getattr(ref._, group_attr) if ref.has_extension(group_attr) else None
            key = ("group", key) if key is not None else ("single", i)
            if key not in groups:
                opened[key] = i
            groups.setdefault(key, []).append(eg)
            # the ``size`` oldest groups are closed once the youngest of them has waited ``buffer`` examples
            while buffer and len(groups) >= size and \
                    i - opened[next(itertools.islice(groups, size - 1, None))] >= buffer:
                for closed in itertools.islice(groups, size):
                    del opened[closed]
                yield take(groups, size)
        while groups:
            yield take(groups, size)

    return batcher


SAMPLINGS = ("proportional", "temperature", "uniform", "concat")


def mixing_probabilities(sizes: Dict[str, int], sampling: str, temperature: float = 2.0) -> Dict[str, float]:
    """How often each corpus is drawn: "proportional" (p ∝ n), "temperature"
    (p ∝ n^(1/T): T=1 is proportional, larger T moves towards uniform),
    "uniform" (every corpus equally, however small)."""
    if sampling not in SAMPLINGS or sampling == "concat":
        raise BertflowError(Errors.E051.format(sampling=sampling, samplings=', '.join(SAMPLINGS)))
    if sampling == "temperature" and temperature <= 0:
        raise BertflowError(Errors.E052.format(temperature=temperature))
    power = {"proportional": 1.0, "temperature": 1.0 / temperature, "uniform": 0.0}[sampling]
    raw = {name: float(n) ** power if n else 0.0 for name, n in sizes.items()}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


@registry.readers("bertflow.MixedCorpus.v1")
def create_mixed_corpus(
    paths: Dict[str, Optional[Path]],
    sampling: str = "temperature",
    temperature: float = 2.0,
    epoch_size: int = 0,
    seed: int = 0,
    max_length: int = 0,
    limit: int = 0,
) -> Callable[[Language], Iterable[Example]]:
    """Several ``.spacy`` corpora (one per dataset or task) read as one, for
    multitask training where every head learns from the examples that carry
    its annotation.

    paths (Dict[str, Path]): name -> ``.spacy`` file or folder, or a ``.txt``/``.jsonl``
        file of raw text (read by ``bertflow.TextCorpus.v1`` with its defaults,
        for a masked-LM head beside the others); a null path is skipped.
    sampling (str): "proportional", "temperature" (p ∝ n^(1/temperature)),
        "uniform" (each corpus equally often) or "concat" (every example of
        every corpus once, in order: for dev sets).
    temperature (float): T for "temperature" sampling; default 2.
    epoch_size (int): examples per pass for the sampling modes; 0 = the total
        size of all corpora. Small corpora repeat (each reshuffled when it
        runs out), large ones are subsampled.
    seed (int): seed of the draws, so a pass is reproducible.
    max_length (int): as ``spacy.Corpus.v1``.
    limit (int): read at most this many examples of each corpus (0: all), as
        ``spacy.Corpus.v1``'s limit: e.g. a quick dev set for the evaluations
        during training, with the full one left to ``bertflow evaluate``.
    """
    live = {name: path for name, path in paths.items() if path is not None}
    if not live:
        raise BertflowError(Errors.E053)
    if sampling not in SAMPLINGS:
        raise BertflowError(Errors.E051.format(sampling=sampling, samplings=', '.join(SAMPLINGS)))
    readers = {name: create_corpus_reader(path, max_length=max_length, limit=limit) for name, path in live.items()}

    def read(nlp: Language) -> Iterator[Example]:
        if sampling == "concat":
            for reader in readers.values():
                yield from reader(nlp)
            return
        pools = {name: list(reader(nlp)) for name, reader in readers.items()}
        probs = mixing_probabilities({name: len(p) for name, p in pools.items()}, sampling, temperature)
        rng = random.Random(seed)
        names = [name for name in pools if pools[name]]
        weights = [probs[name] for name in names]
        cursors = {name: len(pools[name]) for name in names}  # exhausted: shuffle on first use
        for _ in range(epoch_size or sum(len(p) for p in pools.values())):
            name = rng.choices(names, weights)[0]
            if cursors[name] >= len(pools[name]):
                rng.shuffle(pools[name])
                cursors[name] = 0
            yield pools[name][cursors[name]]
            cursors[name] += 1

    return read

