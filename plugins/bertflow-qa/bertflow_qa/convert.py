"""SQuAD v1.1 / v2.0 JSON -> ``.spacy``: one doc per question.

The doc is the context (tokenised once per paragraph), ``doc._.text_pair``
the question, ``doc.spans["answers"]`` the gold answers aligned to tokens
(attrs: ``texts``, the original answer texts the scorer compares against,
and the question ``id``). An answer that does not fall on token boundaries
is expanded to the tokens it touches and counted; an unanswerable question
(v2.0 ``is_impossible``) gets an empty group, a no-answer training example.

Problems (bad JSON, a missing field, an answer text that is not at its
``answer_start``) are errors naming the file and the question's place
(``data[i].paragraphs[j].qas[k]`` and its id), or with ``skip_bad`` skipped
and counted.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import spacy
from spacy.tokens import Doc, DocBin, SpanGroup

from bertflow.api import BertflowError, ConversionReport, json_problem, malformed_row

from .errors import Errors
from .docs import copy_tokens

SPANS_KEY = "answers"


@dataclass
class SquadReport(ConversionReport):
    n_questions: int = 0
    n_answers: int = 0
    n_adjusted: int = 0
    n_impossible: int = 0
    n_contexts: int = 0

    def details(self) -> str:
        return (f"{self.n_questions} questions over {self.n_contexts} contexts, {self.n_answers} answers, "
                f"{self.n_adjusted} answers expanded to token boundaries, {self.n_impossible} unanswerable")


def _load(path: Path) -> list:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise BertflowError(Errors.QA013.format(path=path, object=err.object[err.start], start=err.start)) from None
    except json.JSONDecodeError as err:
        raise BertflowError(Errors.QA014.format(path=path, lineno=err.lineno, err=json_problem(err))) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BertflowError(Errors.QA010.format(path=path))
    return data["data"]


def convert(input_path: Union[str, Path], output_path: Union[str, Path], *, lang: str = "en",
            skip_bad: bool = False, limit: Optional[int] = None) -> SquadReport:
    """Convert a SQuAD JSON file. ``limit``: stop after this many questions."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(Errors.QA011.format(input_path=input_path))
    articles = _load(input_path)
    nlp = spacy.blank(lang)
    report = SquadReport(str(input_path), str(output_path))
    docs = []
    for a, article in enumerate(articles):
        for p, para in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where_p = f"data[{a}].paragraphs[{p}]"
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str) or not isinstance(para.get("qas", []), list):
                malformed_row(report, input_path, where_p, "needs a 'context' string and a 'qas' list", skip_bad)
                continue
            context_doc = nlp.make_doc(context)
            report.n_contexts += 1
            for q, qa in enumerate(para.get("qas", [])):
                if limit is not None and report.n_questions >= limit:
                    break
                doc, problem = _question(context_doc, context, qa, report)
                if problem is not None:
                    qid = qa.get("id") if isinstance(qa, dict) else None
                    malformed_row(report, input_path, f"{where_p}.qas[{q}]" + (f" (id {qid})" if qid else ""),
                                  problem, skip_bad)
                    continue
                docs.append(doc)
    if not docs:
        raise BertflowError(Errors.QA012.format(input_path=input_path, n_skipped=report.n_skipped))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(output_path)
    report.n_docs = len(docs)
    return report


def _question(context_doc: Doc, context: str, qa, report: SquadReport):
    """(doc, None) for a good question, or (None, problem)."""
    if not isinstance(qa, dict):
        return None, "a question must be an object"
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        return None, "needs a non-empty 'question'"
    impossible = bool(qa.get("is_impossible", False))
    answers = qa.get("answers", [])
    if not isinstance(answers, list) or (not answers and not impossible):
        return None, "needs a non-empty 'answers' list (or is_impossible: true)"
    doc = copy_tokens(context_doc)
    spans, texts = [], []
    for n, ans in enumerate([] if impossible else answers):
        text, start = (ans.get("text"), ans.get("answer_start")) if isinstance(ans, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(start, int) or not text.strip():
            return None, f"answers[{n}] needs 'text' and an integer 'answer_start'"
        if context[start: start + len(text)] != text:
            return None, (f"answers[{n}]: {text!r} is not at answer_start {start} (the context has "
                          f"{context[start: start + len(text)]!r} there)")
        # strip surrounding whitespace of the answer before aligning
        lead = len(text) - len(text.lstrip())
        s, e = start + lead, start + len(text.rstrip())
        span = doc.char_span(s, e, alignment_mode="expand")
        if span is None or not len(span):
            return None, f"answers[{n}]: {text!r} at {start} covers no token"
        if span.start_char != s or span.end_char != e:
            report.n_adjusted += 1
        spans.append(span)
        texts.append(text)
    doc._.text_pair = question
    doc.spans[SPANS_KEY] = SpanGroup(doc, name=SPANS_KEY, spans=spans, attrs={"texts": texts, "id": qa.get("id")})
    report.n_questions += 1
    report.n_answers += len(spans)
    report.n_impossible += int(impossible)
    return doc, None
