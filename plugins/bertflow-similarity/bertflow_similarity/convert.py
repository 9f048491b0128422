"""Sentence pairs -> ``.spacy`` for the bi-encoder or the cross-encoder.

Formats: ``tsv`` (GLUE STS-B: header with ``sentence1``, ``sentence2`` and
``score`` columns) and ``jsonl`` (``{"text_a", "text_b", "score"}`` or
``"label"``). ``mode="bi"`` writes two docs per pair sharing
``doc._.sim_group`` (the bi-encoder trains on both in one batch);
``mode="cross"`` writes one doc per pair: ``doc._.text_pair`` = text_a, the
doc = text_b (``doc._.sim_score`` or ``doc.cats`` for a label).
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import spacy
from spacy.tokens import DocBin

from bertflow.api import BertflowError, ConversionReport, jsonl_rows, malformed_row, text_lines

from .errors import Errors
from .extensions import install_extensions

MODES = ("bi", "cross")


@dataclass
class PairReport(ConversionReport):
    mode: str = "bi"
    n_pairs: int = 0
    labels: List[str] = field(default_factory=list)

    def details(self) -> str:
        kind = f"labels: {', '.join(self.labels)}" if self.labels else "scores"
        return f"{self.n_pairs} pairs for the {'bi' if self.mode == 'bi' else 'cross'}-encoder; {kind}"


Row = Tuple[int, Optional[str], Optional[str], Optional[float], Optional[str], Optional[str]]


def _read_tsv(path: Path) -> Iterator[Row]:
    lines = text_lines(path)
    line_no, first, problem = next(lines, (1, None, None))
    if problem:
        raise BertflowError(Errors.SIM009.format(path=path, problem=problem))
    if first is None:
        return
    header = first.split("\t")
    try:
        ia, ib, isc = header.index("sentence1"), header.index("sentence2"), header.index("score")
    except ValueError:
        raise BertflowError(Errors.SIM014.format(path=path, header=header)) from None
    for line_no, line, problem in lines:
        if problem:
            yield line_no, None, None, None, None, problem
            continue
        cols = line.split("\t")
        if not any(c.strip() for c in cols):
            continue
        if len(cols) != len(header):
            yield line_no, None, None, None, None, f"expected {len(header)} columns, found {len(cols)}"
            continue
        try:
            score = float(cols[isc])
        except ValueError:
            yield line_no, None, None, None, None, f"score {cols[isc]!r} is not a number"
            continue
        yield line_no, cols[ia], cols[ib], score, None, None


def _read_jsonl(path: Path) -> Iterator[Row]:
    for line_no, row, problem in jsonl_rows(path):
        if problem:
            yield line_no, None, None, None, None, problem
            continue
        score, label = row.get("score"), row.get("label")
        if score is not None and not isinstance(score, (int, float)):
            yield line_no, None, None, None, None, f"score {score!r} is not a number"
        elif score is None and label is None:
            yield line_no, None, None, None, None, "needs a 'score' or a 'label'"
        else:
            yield line_no, row.get("text_a"), row.get("text_b"), score, None if label is None else str(label), None


def convert(input_path: Union[str, Path], output_path: Union[str, Path], *, mode: str = "bi",
            file_format: Optional[str] = None, lang: str = "en", skip_bad: bool = False) -> PairReport:
    """Convert a pair file; malformed rows are errors naming file and line (or skipped and counted)."""
    install_extensions()
    if mode not in MODES:
        raise BertflowError(Errors.SIM010.format(mode=mode))
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(Errors.SIM011.format(input_path=input_path))
    file_format = file_format or input_path.suffix.lstrip(".").lower()
    readers = {"tsv": _read_tsv, "jsonl": _read_jsonl}
    if file_format not in readers:
        raise BertflowError(Errors.SIM012.format(file_format=file_format, input_path=input_path))
    nlp = spacy.blank(lang)
    report = PairReport(str(input_path), str(output_path), mode=mode)
    labels = set()
    docs = []
    for line_no, a, b, score, label, problem in readers[file_format](input_path):
        if problem is None and (not isinstance(a, str) or not a.strip() or not isinstance(b, str) or not b.strip()):
            problem = "both sentences must be non-empty text"
        if problem is not None:
            malformed_row(report, input_path, line_no, problem, skip_bad)
            continue
        if label is not None and mode == "bi":
            malformed_row(report, input_path, line_no, "the bi-encoder trains on scores, not labels "
                          "(use mode 'cross' for labelled pairs)", skip_bad)
            continue
        report.n_pairs += 1
        if mode == "bi":
            for text in (a, b):
                doc = nlp.make_doc(text)
                doc._.sim_group = f"{input_path.name}:{line_no}"
                doc._.sim_score = float(score)
                docs.append(doc)
        else:
            doc = nlp.make_doc(b)
            doc._.text_pair = a
            if label is not None:
                labels.add(label)
                doc.user_data["pair_label"] = label
            else:
                doc._.sim_score = float(score)
            docs.append(doc)
    if labels:
        for doc in docs:
            gold = doc.user_data.pop("pair_label", None)
            if gold is not None:
                doc.cats = {name: float(name == gold) for name in sorted(labels)}
    if not docs:
        raise BertflowError(Errors.SIM013.format(input_path=input_path, n_skipped=report.n_skipped))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(output_path)
    report.n_docs = len(docs)
    report.labels = sorted(labels)
    return report


def convert_cross(input_path: Union[str, Path], output_path: Union[str, Path], *, file_format: Optional[str] = None,
                  lang: str = "en", skip_bad: bool = False) -> PairReport:
    """``convert`` with ``mode="cross"``: the converter of the pair_classifier task."""
    return convert(input_path, output_path, mode="cross", file_format=file_format, lang=lang, skip_bad=skip_bad)
