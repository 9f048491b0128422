"""Raw NER data -> ``.spacy`` DocBin with ``doc.ents``.

Formats:
- ``conll``: one token per line, the tag in the last column (so CoNLL-2003's
  4-column ``token POS chunk NER`` and 2-column ``token TAG`` files both
  work), blank lines between sentences, ``-DOCSTART-`` lines skipped. IOB1 and
  IOB2 are both accepted (an I- after O or after another type opens an entity).
- ``jsonl``: ``{"text": ..., "entities": [[start_char, end_char, label], ...]}``
  (``"spans"`` with ``{"start", "end", "label"}`` objects also works).
  A span that doesn't fall on token boundaries is an error naming the doc
  and span under ``alignment_mode="strict"``; with "contract" or "expand" it
  is adjusted and counted. Nothing is dropped silently.

Every converted doc is marked as annotated (tokens outside entities are O), so
a sentence with no entities teaches the head "no entities here".
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import iob_to_biluo, tags_to_entities

from bertflow.api import BertflowError, ConversionReport as BaseReport, jsonl_rows, malformed_row

from .errors import Errors


@dataclass
class ConversionReport(BaseReport):
    n_entities: int = 0
    n_adjusted: int = 0
    labels: Dict[str, int] = field(default_factory=dict)

    def details(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        return f"{self.n_entities} entities: {labels}; {self.n_adjusted} spans adjusted to token boundaries"


def iob_spans(tags: List[str]) -> List[tuple]:
    """(start, end, label) from IOB1 or IOB2 tags, read by spaCy's own
    ``iob_to_biluo`` (a stray I- opens an entity, as conlleval reads it)."""
    return [(start, end + 1, label) for label, start, end in tags_to_entities(iob_to_biluo(list(tags)))]


def _read_conll(path: Path, nlp, report: ConversionReport, skip_bad: bool) -> List[Doc]:
    """Sentences (blank-line separated) to docs. A bad line is an error naming its
    line; with ``skip_bad`` its whole sentence is skipped and counted (keeping the
    rest would make a sentence that never existed)."""
    docs, words, tags, problems = [], [], [], []

    def flush():
        if problems:
            report.n_skipped += 1
            first, last = problems[0][0], problems[-1][0]
            report.problems.append(f"skipped the sentence with {path}:{first}"
                                   + (f" (and {len(problems) - 1} more bad lines up to line {last})"
                                      if len(problems) > 1 else "") + f": {problems[0][1]}")
        elif words:
            doc = Doc(nlp.vocab, words=words)
            doc.set_ents([Span(doc, s, e, label=lab) for s, e, lab in iob_spans(tags)], default="outside")
            docs.append(doc)
        words.clear()
        tags.clear()
        problems.clear()

    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):  # lines split on \n only
            try:
                line = raw.decode("utf8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as err:
                line, problem = None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x}); re-save the file as UTF-8"
            else:
                if not line.strip() or line.startswith("-DOCSTART-"):
                    flush()
                    continue
                cols = line.split()
                tag = cols[-1] if len(cols) >= 2 else ""
                problem = ""
                if len(cols) < 2:
                    problem = f"expected 'token ... TAG' (2 or more columns), found {len(cols)}"
                elif tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
                    problem = f"bad tag {tag!r}: use O, B-TYPE or I-TYPE"
            if problem:
                if not skip_bad:
                    malformed_row(report, path, line_no, problem, skip_bad)
                problems.append((line_no, problem))
                continue
            words.append(cols[0])
            tags.append(tag)
    flush()
    return docs


def _read_jsonl(path: Path, nlp, report: ConversionReport, skip_bad: bool, alignment_mode: str) -> List[Doc]:
    docs = []
    for line_no, obj, problem in jsonl_rows(path):
        where = f"{path}:{line_no}"
        if problem is None:
            try:
                text = obj["text"]
                raw = obj.get("entities", obj.get("spans", []))
                ents = [(e["start"], e["end"], e["label"]) if isinstance(e, dict) else tuple(e) for e in raw]
                if not isinstance(text, str) or any(len(e) != 3 for e in ents):
                    raise ValueError("bad fields")
            except (KeyError, TypeError, ValueError) as err:
                problem = (f'expected {{"text": str, "entities": [[start, end, label], ...]}} '
                           f"({type(err).__name__}: {err})")
        if problem is not None:
            malformed_row(report, path, line_no, problem, skip_bad)
            continue
        doc = nlp.make_doc(text)
        spans = []
        for start, end, label in ents:
            if not (0 <= start < end <= len(text)):
                raise BertflowError(Errors.NER009.format(
                                        where=where,
                                        start=start,
                                        end=end,
                                        label=label,
                                        length=len(text),
                                    ))
            span = doc.char_span(start, end, label=label, alignment_mode="strict")
            if span is None:
                if alignment_mode == "strict":
                    raise BertflowError(
                        Errors.NER011.format(
                            where=where,
                            text=text[start:end],
                            start=start,
                            end=end,
                            label=label,
                            text2=text[:40],
                        )
                    )
                span = doc.char_span(start, end, label=label, alignment_mode=alignment_mode)
                report.n_adjusted += 1
                report.problems.append(f"adjusted {where}: {text[start:end]!r} -> "
                                       f"{span.text if span is not None else None!r} ({alignment_mode})")
                if span is None:
                    raise BertflowError(Errors.NER012.format(where=where, text=text[start:end]))
            spans.append(span)
        try:
            doc.set_ents(spans, default="outside")
        except ValueError as err:
            raise BertflowError(Errors.NER010.format(where=where, text=text[:40], err=err)) from None
        docs.append(doc)
    return docs


def convert(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    file_format: Optional[str] = None,
    lang: str = "en",
    skip_bad: bool = False,
    alignment_mode: str = "strict",
) -> ConversionReport:
    """Convert a CoNLL or JSONL NER file to a DocBin.

    file_format (Optional[str]): "conll" or "jsonl"; default from the suffix
        (.jsonl -> jsonl, anything else -> conll).
    skip_bad (bool): skip and count malformed rows (for CoNLL: the whole sentence
        holding a bad line) instead of raising.
    alignment_mode (str): for JSONL spans off token boundaries: "strict"
        (error), "contract" or "expand" (adjust and count).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(Errors.NER005.format(input_path=input_path))
    if alignment_mode not in ("strict", "contract", "expand"):
        raise BertflowError(Errors.NER006.format(alignment_mode=alignment_mode))
    file_format = file_format or ("jsonl" if input_path.suffix.lower() == ".jsonl" else "conll")
    nlp = spacy.blank(lang)
    report = ConversionReport(str(input_path), str(output_path))
    if file_format == "conll":
        docs = _read_conll(input_path, nlp, report, skip_bad)
    elif file_format == "jsonl":
        docs = _read_jsonl(input_path, nlp, report, skip_bad, alignment_mode)
    else:
        raise BertflowError(Errors.NER008.format(file_format=file_format))
    if not docs:
        raise BertflowError(Errors.NER007.format(input_path=input_path, n_skipped=report.n_skipped))
    for doc in docs:
        for ent in doc.ents:
            report.labels[ent.label_] = report.labels.get(ent.label_, 0) + 1
            report.n_entities += 1
    report.n_docs = len(docs)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(output_path)
    return report
