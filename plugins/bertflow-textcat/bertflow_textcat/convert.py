"""Raw text classification data -> ``.spacy`` DocBin with ``doc.cats``.

Formats:
- ``tsv``: ``text<TAB>label`` per line; a header line whose last column is
  ``label`` (SST-2's ``sentence<TAB>label``) is recognised and skipped.
- ``jsonl``: ``{"text": ..., "label": ...}`` (exclusive) or
  ``{"text": ..., "labels": [...]}`` (multi-label), one object per line.

Every doc gets a value for every label (1.0 / 0.0), so exclusive training
data is complete. A malformed row is an error naming file and line; with
``skip_bad=True`` it is skipped and counted instead, and the report lists it.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import spacy
from spacy.tokens import DocBin

from bertflow.api import BertflowError, ConversionReport as BaseReport, jsonl_rows, malformed_row, text_lines

from .errors import Errors


@dataclass
class ConversionReport(BaseReport):
    labels: List[str] = field(default_factory=list)
    multi_label: bool = False

    def details(self) -> str:
        return f"{'multi-label' if self.multi_label else 'exclusive'}; labels: {', '.join(self.labels)}"


def read_tsv(path: Path) -> Iterator[Tuple[int, Optional[str], Union[str, List[str], None], str]]:
    """Yield (line number, text, label, problem) for each data row."""
    for line_no, line, problem in text_lines(path):
        if problem:
            yield line_no, None, None, problem
            continue
        if not line.strip():
            continue
        cols = line.split("\t")
        if line_no == 1 and cols[-1].strip().lower() in ("label", "labels"):
            continue  # header
        if len(cols) != 2:
            yield line_no, None, None, f"expected 2 tab-separated columns (text, label), found {len(cols)}"
            continue
        text, label = cols[0], cols[1].strip()
        if not text.strip():
            yield line_no, None, None, "empty text"
        elif not label:
            yield line_no, None, None, "empty label"
        else:
            yield line_no, text, label, ""


def read_jsonl(path: Path):
    """Yield (line number, text, label(s), problem) for each JSONL row."""
    for line_no, obj, problem in jsonl_rows(path):
        if problem:
            yield line_no, None, None, problem
        elif not isinstance(obj.get("text"), str):
            yield line_no, None, None, 'expected an object with a "text" string'
        elif not obj["text"].strip():
            yield line_no, None, None, "empty text"
        elif "labels" in obj and isinstance(obj["labels"], list):
            yield line_no, obj["text"], [str(x) for x in obj["labels"]], ""
        elif "label" in obj and obj["label"] is not None and str(obj["label"]).strip():
            yield line_no, obj["text"], str(obj["label"]), ""
        else:
            yield line_no, None, None, 'expected "label" (a value) or "labels" (a list)'


READERS = {"tsv": read_tsv, "jsonl": read_jsonl}


def convert(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    file_format: Optional[str] = None,
    lang: str = "en",
    skip_bad: bool = False,
    label_map: Optional[Dict[str, str]] = None,
    labels: Optional[List[str]] = None,
) -> ConversionReport:
    """Convert a TSV or JSONL file to a DocBin with ``doc.cats``.

    file_format (Optional[str]): "tsv" or "jsonl"; default from the file suffix.
    skip_bad (bool): skip and count malformed rows instead of raising.
    label_map (Optional[Dict[str, str]]): rename raw labels, e.g. {"0": "NEGATIVE"};
        when given, every raw label must be in it (a row with another is malformed).
    labels (Optional[List[str]]): the full label set (default: the labels seen);
        a row with another label is malformed.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(Errors.TC005.format(input_path=input_path))
    file_format = file_format or input_path.suffix.lstrip(".").lower()
    if file_format not in READERS:
        raise BertflowError(Errors.TC006.format(
                                file_format=file_format,
                                input_path=input_path,
                                READERS=', '.join(READERS),
                            ))
    report = ConversionReport(str(input_path), str(output_path))
    rows = []
    for line_no, text, label, problem in READERS[file_format](input_path):
        if not problem and label_map:
            raw = [label] if isinstance(label, str) else label
            unmapped = [x for x in raw if x not in label_map]
            if unmapped:
                problem = (f"label(s) {unmapped} not in the label map {label_map}: add them to --label-map, "
                           f"or fix the row")
            else:
                mapped = [label_map[x] for x in raw]
                label = mapped[0] if isinstance(label, str) else mapped
        if not problem and labels is not None:
            unknown = [x for x in ([label] if isinstance(label, str) else label) if x not in labels]
            if unknown:
                problem = f"unknown label(s) {unknown}; known: {labels} (--labels)"
        if problem:
            malformed_row(report, input_path, line_no, problem, skip_bad)
            continue
        rows.append((text, label))
    if not rows:
        raise BertflowError(Errors.TC007.format(input_path=input_path, n_skipped=report.n_skipped))
    report.multi_label = any(isinstance(label, list) for _, label in rows)
    seen = sorted({x for _, label in rows for x in ([label] if isinstance(label, str) else label)})
    report.labels = list(labels) if labels is not None else seen
    nlp = spacy.blank(lang)
    db = DocBin(store_user_data=True)
    for doc, (_, label) in zip(nlp.tokenizer.pipe(text for text, _ in rows), rows):
        on = {label} if isinstance(label, str) else set(label)
        doc.cats = {name: float(name in on) for name in report.labels}
        db.add(doc)
    report.n_docs = len(rows)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(output_path)
    return report
