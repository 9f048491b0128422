"""Raw text -> ``.spacy`` DocBin of raw-text docs (``doc._.raw_text``).

Training reads ``.txt``/``.jsonl`` directly (``bertflow.TextCorpus.v1``); a
DocBin is for corpora that mix it with annotated ``.spacy`` files, or to
tokenize once. Formats: ``txt`` (one document per line, or with
``paragraphs`` blank-line separated) and ``jsonl`` (``{"text": ...}``).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import spacy
from spacy.tokens import DocBin

from bertflow.api import ConversionReport as BaseReport, read_texts


@dataclass
class ConversionReport(BaseReport):
    n_tokens: int = 0

    def details(self) -> str:
        return f"{self.n_tokens} tokens"


def convert(input_path: Union[str, Path], output_path: Union[str, Path], *, lang: str = "en",
            paragraphs: bool = False, field: str = "text", skip_bad: bool = False) -> ConversionReport:
    """Write every document of ``input_path`` as a raw-text doc to ``output_path``.

    lang (str): spaCy language whose tokenizer makes the words (whole-word masking's units).
    paragraphs (bool): ``.txt``: blank-line separated documents instead of one per line.
    field (str): ``.jsonl``: the text field.
    skip_bad (bool): skip (and count) bad lines instead of stopping at the first.
    """
    nlp = spacy.blank(lang)
    report = ConversionReport(str(input_path), str(output_path))
    problems: dict = {}
    db = DocBin(store_user_data=True)
    for text in read_texts(input_path, field=field, paragraphs=paragraphs, skip_bad=skip_bad, report=problems):
        doc = nlp.make_doc(text)
        doc._.raw_text = True
        db.add(doc)
        report.n_docs += 1
        report.n_tokens += len(doc)
    report.n_skipped = problems.get("skipped", 0)
    report.problems = list(problems.get("problems", []))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(output_path)
    return report
