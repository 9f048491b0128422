"""``bertflow.ask``: questions in, ranked answers out.

Only the components the QA head needs run (the encoders and the QA head);
other heads stay idle, so asking does not pay for them.
"""
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span

from bertflow.api import BertflowError

from .errors import Errors
from .docs import copy_tokens
from .extensions import install_extensions

Context = Union[str, Doc]


@dataclass(frozen=True)
class Answer:
    """One answer: ``context[start_char:end_char] == text``; ``score`` is
    p(start) * p(end); ``span`` the answer's Span on the answered doc."""

    text: str
    start_char: int
    end_char: int
    score: float
    span: Span


def find_qa_component(nlp: Language, component: Optional[str] = None) -> str:
    names = [name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory == "bertflow_qa"]
    if component is not None:
        if component not in names:
            raise BertflowError(Errors.QA005.format(component=component, none=names or 'none'))
        return component
    if not names:
        raise BertflowError(
            Errors.QA001.format(nothing=', '.join(nlp.pipe_names) or 'nothing')
        )
    if len(names) > 1:
        raise BertflowError(Errors.QA002.format(names=names))
    return names[0]


def _disabled_for(nlp: Language, qa_name: str) -> List[str]:
    """Every component except the QA head and the encoders it listens to."""
    return [name for name, pipe in nlp.pipeline
            if name != qa_name and getattr(pipe, "listeners", None) is None]


def _question_doc(nlp: Language, question: str, context: Context, top_k: int) -> Doc:
    if not isinstance(question, str) or not question.strip():
        raise BertflowError(Errors.QA003.format(question=question))
    if isinstance(context, Doc):  # reuse its tokens; the encoder re-runs with the question
        doc = copy_tokens(context, nlp.vocab)
    elif isinstance(context, str):
        doc = nlp.make_doc(context)
    else:
        raise BertflowError(Errors.QA006.format(type_name=type(context).__name__))
    doc._.text_pair = question
    doc._.qa_top_k = int(top_k)
    return doc


def _answers(doc: Doc, key: str) -> List[Answer]:
    if key not in doc.spans:
        return []
    group = doc.spans[key]
    scores = group.attrs.get("scores", [])
    return [Answer(span.text, span.start_char, span.end_char, float(score), span) for span, score in zip(group, scores)]


def ask_many(
    nlp: Language,
    pairs: Iterable[Tuple[str, Context]],
    *,
    top_k: int = 1,
    batch_size: int = 32,
    n_process: int = 1,
    component: Optional[str] = None,
) -> Iterator[List[Answer]]:
    """Answer a stream of ``(question, context)`` pairs through ``nlp.pipe``.

    Yields one list of answers (best first, at most ``top_k``) per pair, in order.
    A context may be a Doc (its tokens are reused, not re-tokenised).
    """
    install_extensions()
    if top_k < 1:
        raise BertflowError(Errors.QA004.format(top_k=top_k))
    qa_name = find_qa_component(nlp, component)
    key = nlp.get_pipe(qa_name).cfg["spans_key"]
    docs = (_question_doc(nlp, q, c, top_k) for q, c in pairs)
    for doc in nlp.pipe(docs, batch_size=batch_size, n_process=n_process, disable=_disabled_for(nlp, qa_name)):
        yield _answers(doc, key)


def ask(
    nlp: Language,
    question: Union[str, Sequence[str]],
    context: Context,
    top_k: int = 1,
    *,
    batch_size: int = 32,
    component: Optional[str] = None,
) -> Union[List[Answer], List[List[Answer]]]:
    """Answer ``question`` from ``context`` (a str or a Doc).

    RETURNS: a list of at most ``top_k`` answers, best first (empty when the
    context is empty or the head finds no answer). With a list of questions,
    one such list per question; the context is tokenised once for all.
    """
    if isinstance(question, str):
        return next(ask_many(nlp, [(question, context)], top_k=top_k, batch_size=batch_size, component=component))
    if not isinstance(context, Doc):
        context = nlp.make_doc(context) if isinstance(context, str) else context
    return list(ask_many(nlp, [(q, context) for q in question], top_k=top_k, batch_size=batch_size,
                         component=component))
