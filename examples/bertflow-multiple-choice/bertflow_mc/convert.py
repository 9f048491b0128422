"""Multiple-choice JSONL -> ``.spacy``: one doc per (context, candidate).

Each line: ``{"id": "q1", "context": "...", "candidates": ["...", ...], "label": 2}``
(``id`` optional: file name and line number by default; ``label`` the index
of the right candidate, optional for unlabelled data).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import spacy
from spacy.tokens import DocBin

from bertflow.api import BertflowError, ConversionReport as BaseReport, jsonl_rows, malformed_row

from .component import install_extensions


@dataclass
class ConversionReport(BaseReport):
    n_questions: int = 0

    def details(self) -> str:
        return f"{self.n_questions} questions, one doc per candidate"


def _problem(row: dict) -> Optional[str]:
    if not isinstance(row.get("context"), str) or not row["context"].strip():
        return "missing or empty 'context'"
    cands = row.get("candidates")
    if not isinstance(cands, list) or len(cands) < 2 or not all(isinstance(c, str) and c.strip() for c in cands):
        return "'candidates' must be a list of at least two non-empty strings"
    label = row.get("label")
    if label is not None and (not isinstance(label, int) or not 0 <= label < len(cands)):
        return f"'label' must be an index into the {len(cands)} candidates, got {label!r}"
    return None


def convert(input_path: Union[str, Path], output_path: Union[str, Path], *, lang: str = "en",
            skip_bad: bool = False) -> ConversionReport:
    """Convert a JSONL file; a malformed row is an error naming file and line
    (or, with ``skip_bad``, skipped and counted in the report)."""
    install_extensions()
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(f"{input_path} does not exist.")
    nlp = spacy.blank(lang)
    report = ConversionReport(str(input_path), str(output_path))
    docs = []
    for line_no, row, problem in jsonl_rows(input_path):
        problem = problem or _problem(row)
        if problem:
            malformed_row(report, input_path, line_no, problem, skip_bad)
            continue
        question = str(row.get("id", f"{input_path.name}:{line_no}"))
        for i, candidate in enumerate(row["candidates"]):
            doc = nlp.make_doc(candidate)
            doc._.text_pair = row["context"]
            doc._.mc_question = question
            if row.get("label") is not None:
                doc._.mc_label = float(i == row["label"])
            docs.append(doc)
        report.n_questions += 1
    if not docs:
        raise BertflowError(f"{input_path} holds no usable questions: nothing to write.")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(output_path)
    report.n_docs = len(docs)
    return report
