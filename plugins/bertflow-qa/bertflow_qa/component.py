"""The ``bertflow_qa`` component: extractive question answering.

The doc is the context and ``doc._.text_pair`` the question. Answers go to
``doc.spans[spans_key]`` (default "answers"), best first; the SpanGroup's
attrs keep ``scores`` (p(start) * p(end) of each answer), ``logits`` (start +
end logits), ``null_score`` / ``null_logit`` (the no-answer score from
[CLS]) and the ``question``.

Gold annotation, on reference docs: ``doc.spans[spans_key]`` with the answer
spans (the first one is the training target); an *empty* group marks an
unanswerable question (target: [CLS]); a doc without the key gives no loss.
A doc without a question gets no answers and gives no loss.
"""
from typing import Callable, Iterable, List, Optional

import numpy
from spacy.attrs import IS_SPACE
from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Model
from thinc.types import Floats2d

from bertflow.api import BertflowError, HeadPipe, batch_rows, loss_denominator, soft_target_loss

from .errors import Errors
from .decoding import batch_best_spans, batch_null_scores, log_softmax
from .extensions import install_extensions

ANSWER_LABEL = "ANSWER"  # the label of answer spans (displaCy shows it)

DEFAULT_MODEL = {
    "@architectures": "bertflow.QAHead.v1",
    "wordpieces": "first",
    "dropout": 0.1,
    "layers": "last",
    "n_layers": 4,
    "grad_factor": 1.0,
    "upstream": "*",
}


@Language.factory(
    "bertflow_qa",
    assigns=["doc.spans"],
    requires=["doc._.text_pair"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": "answers",
        "top_k": 3,
        "max_answer_len": 30,
        "no_answer_threshold": None,
        "loss_weight": 1.0, "learn_rate_scale": 1.0,
        "scorer": {"@scorers": "bertflow.qa_scorer.v1"},
    },
    default_score_weights={"qa_f1": 1.0, "qa_exact": 0.0, "qa_n": None},
)
def make_qa_head(nlp: Language, name: str, model: Model, spans_key: str, top_k: int, max_answer_len: int,
                 no_answer_threshold: Optional[float], scorer: Callable, loss_weight: float = 1.0,
                 learn_rate_scale: float = 1.0) -> "QAHead":
    """An extractive QA head listening to ``bertflow_encoder``.

    model (Model[List[Doc], List[Floats2d]]): usually ``bertflow.QAHead.v1``.
    spans_key (str): ``doc.spans`` key for the answers (and the gold answers).
    top_k (int): answers written per doc (n-best), best first;
        ``doc._.qa_top_k`` overrides it per doc.
    max_answer_len (int): longest answer, in tokens.
    no_answer_threshold (Optional[float]): None (SQuAD v1.1): always answer.
        A number (SQuAD v2.0): answer nothing when the no-answer logit
        exceeds the best answer's logit by more than this (0.0 is the plain
        comparison; tune it on dev data).
    scorer (Callable): usually ``bertflow.qa_scorer.v1`` (SQuAD EM/F1).
    loss_weight (float): scales this head's loss and gradient (multitask training); default 1.
    learn_rate_scale (float): the learning rate of this head's own weights, as a multiple of the
        optimizer's (the encoder keeps the optimizer's); default 1.
    """
    return QAHead(nlp.vocab, model, name, spans_key=spans_key, top_k=top_k, max_answer_len=max_answer_len,
                  no_answer_threshold=no_answer_threshold, scorer=scorer, loss_weight=loss_weight,
                  learn_rate_scale=learn_rate_scale)


class QAHead(HeadPipe):
    def __init__(self, vocab: Vocab, model: Model, name: str = "bertflow_qa", *, spans_key: str = "answers",
                 top_k: int = 3, max_answer_len: int = 30, no_answer_threshold: Optional[float] = None,
                 scorer: Optional[Callable] = None, loss_weight: float = 1.0,
                 learn_rate_scale: float = 1.0):
        install_extensions()
        if int(top_k) < 1 or int(max_answer_len) < 1:
            raise BertflowError(Errors.QA008.format(name=name, top_k=top_k, max_answer_len=max_answer_len))
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight,
                         learn_rate_scale=learn_rate_scale, spans_key=spans_key, top_k=int(top_k),
                         max_answer_len=int(max_answer_len), no_answer_threshold=no_answer_threshold)

    def set_annotations(self, docs: Iterable[Doc], scores: List[Floats2d]) -> None:
        """The best answer spans of every question doc as ``doc.spans[spans_key]``,
        searched for the whole batch at once (one copy of the logits to the host)."""
        key = self.cfg["spans_key"]
        threshold = self.cfg["no_answer_threshold"]
        docs = list(docs)
        asked = [i for i, doc in enumerate(docs) if doc._.text_pair is not None]  # other docs: no answers, no error
        if not asked:
            return
        ops = self.model.ops
        flat, rows = batch_rows(ops, [scores[i] for i in asked])
        flat = numpy.asarray(ops.to_numpy(flat), dtype="float64")
        has_tokens = numpy.asarray([len(docs[i]) > 0 for i in asked])
        if not has_tokens.all():  # a doc without tokens: no spans, no answer for certain; its rows are not searched
            flat, rows = flat[numpy.repeat(has_tokens, rows)], numpy.where(has_tokens, rows, 0)
        allowed = [docs[i].to_array([IS_SPACE]).reshape(-1) == 0 for i in asked]  # no answer starts or ends on a space
        top_k = [docs[i]._.qa_top_k or self.cfg["top_k"] for i in asked]
        spans_of = batch_best_spans(flat, rows, max_answer_len=self.cfg["max_answer_len"], top_k=top_k,
                                    allowed=numpy.concatenate(allowed) if allowed else None)
        null_logits, null_probs = batch_null_scores(flat, rows)
        for i, spans, null_logit, null_prob in zip(asked, spans_of, null_logits.tolist(), null_probs.tolist()):
            doc = docs[i]
            if threshold is not None and spans and null_logit - spans[0].logit > float(threshold):
                spans = []
            doc.spans[key] = SpanGroup(
                doc, name=key,
                spans=[Span(doc, s.start, s.end, label=ANSWER_LABEL) for s in spans],
                attrs={"scores": [s.prob for s in spans], "logits": [s.logit for s in spans],
                       "null_score": null_prob, "null_logit": null_logit, "question": doc._.text_pair},
            )

    def _target(self, eg: Example) -> Optional[tuple]:
        """(start row, end row) in the predicted doc's output (0 = [CLS]), or None: no loss."""
        key = self.cfg["spans_key"]
        ref = eg.reference
        if key not in ref.spans or ref._.text_pair is None or eg.predicted._.text_pair is None:
            return None
        group = ref.spans[key]
        if not len(group):
            return 0, 0  # unanswerable: both ends on [CLS]
        gold = group[0]
        span = eg.predicted.char_span(gold.start_char, gold.end_char, alignment_mode="expand")
        if span is None or not len(span):
            raise BertflowError(
                Errors.QA009.format(
                    name=self.name,
                    text_start=gold.text,
                    start_char=gold.start_char,
                    end_char=gold.end_char,
                    text_pair=ref._.text_pair[:60],
                )
            )
        return span.start + 1, span.end  # rows: [CLS] is row 0, token i is row i + 1

    def is_annotated(self, example: Example) -> bool:
        return self.cfg["spans_key"] in example.reference.spans and example.reference._.text_pair is not None

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]):
        """Mean over annotated docs of (CE(start) + CE(end)) / 2, softmax over
        [CLS] and every context token."""
        examples = list(examples)
        ops = self.model.ops
        targets = [self._target(eg) for eg in examples]
        n = loss_denominator(sum(t is not None for t in targets))  # the batch-wide mean under data parallelism
        d_scores, loss = [], 0.0
        for target, logits in zip(targets, scores):
            d = numpy.zeros(logits.shape, dtype="f")
            if target is not None:
                host = numpy.asarray(ops.to_numpy(logits), dtype="float64")
                for col, gold in enumerate(target):
                    lp = log_softmax(host[:, col])
                    loss -= lp[gold] / (2 * n)
                    d[:, col] = numpy.exp(lp) / (2 * n)
                    d[gold, col] -= 1.0 / (2 * n)
            d_scores.append(ops.asarray2f(d))
        return float(loss), d_scores

    def get_distill_loss(self, examples: Iterable[Example], teacher_scores: List[Floats2d], scores: List[Floats2d], *,
                         temperature: float = 1.0):
        """``bertflow distill``: KL divergence to the teacher's softened start and
        end distributions (over [CLS] and the context tokens), (start + end) / 2,
        mean over the docs that carry a question."""
        examples = list(examples)
        ops = self.model.ops
        width = max([len(s) for s in scores] + [1])
        # one row per (doc, end) over the doc's positions; padding at -1e4 has no probability in either model
        student = numpy.full((2 * len(scores), width), -1e4, dtype="f")
        teacher = numpy.full((2 * len(scores), width), -1e4, dtype="f")
        mask = numpy.zeros((2 * len(scores),), dtype="f")
        for i, (eg, s, t) in enumerate(zip(examples, scores, teacher_scores)):
            if len(s) and eg.predicted._.text_pair is not None:
                student[2 * i: 2 * i + 2, : len(s)] = ops.to_numpy(s).T
                teacher[2 * i: 2 * i + 2, : len(t)] = ops.to_numpy(t).T
                mask[2 * i: 2 * i + 2] = 1.0
        loss, d = soft_target_loss(student, teacher, temperature=temperature, activation="logits", mask=mask)
        d_scores = [ops.asarray2f(numpy.ascontiguousarray(d[2 * i: 2 * i + 2, : len(s)].T))
                    for i, s in enumerate(scores)]
        return loss, d_scores

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        self.model.initialize(X=self.sample_docs(get_examples, nlp))
