"""The similarity plugin's two components, one section each.

**Bi-encoder** ``bertflow_similarity``: sentence embeddings from the shared
encoder, wired into spaCy's similarity hooks.

Each doc gets an L2-normalised embedding (``doc._.sim_vector``; masked mean
over its wordpieces, [CLS] and [SEP] included, by default: the same vector
sentence-transformers computes for the same model), and user hooks so that
``doc.vector``, ``doc.similarity(other)``, ``span.vector`` and
``span.similarity(other)`` use it (cosine). A span's vector is the mean of
its tokens' contextual vectors, normalised.

Fine-tuning: a pair of sentences is two docs sharing ``doc._.sim_group`` with
the gold score in ``doc._.sim_score``; ``bertflow.batch_by_group.v1`` keeps
both in one batch, so both go through the one encoder forward pass of that
batch, and the loss is sentence-transformers' CosineSimilarityLoss:
``(cos(u, v) - score / score_scale)²`` averaged over the pairs.

**Cross-encoder** ``bertflow_pair_classifier``: the pair
``(doc._.text_pair, doc.text)`` through the encoder's pair input, a head on
[CLS] (the BERT paper's sentence-pair tasks).

- regression (default): one logit; ``doc._.pair_score = sigmoid(logit) *
  score_scale``; trained with binary cross-entropy against ``score /
  score_scale`` (sentence-transformers' CrossEncoder with one label);
- classification: softmax over labels into ``doc.cats`` (paraphrase, NLI...).
"""
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import SimpleFrozenList
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model
from thinc.types import Floats2d

from bertflow.api import (BertflowError, HeadPipe, annotation_mask, binary_cross_entropy,
                          cosine_distance_loss, loss_denominator, set_doc_values, soft_target_loss,
                          softmax_cross_entropy)

from .errors import Errors
from .reference import PretrainedCopy
from . import architectures  # noqa: F401  (registers bertflow.PairClassifierHead.v1)
from .extensions import install_extensions
from .scorer import complete_pairs

# ---- bi-encoder: bertflow_similarity --------------------------------------------------------------------

DEFAULT_MODEL = {"@architectures": "bertflow.DocPooler.v1", "pooling": "mean_all", "grad_factor": 1.0}


@Language.factory(
    "bertflow_similarity",
    assigns=["doc._.sim_vector"],
    default_config={"model": DEFAULT_MODEL, "score_scale": 5.0, "loss_weight": 1.0, "zero_shot_guard": False,
                    "scorer": {"@scorers": "bertflow.similarity_scorer.v1"}},
    default_score_weights={"sim_spearman": 1.0, "sim_pearson": 0.0},
)
def make_similarity_head(nlp: Language, name: str, model: Model, score_scale: float, scorer: Callable,
                         loss_weight: float = 1.0, zero_shot_guard: bool = False) -> "SimilarityHead":
    """A sentence-embedding head listening to ``bertflow_encoder``.

    model (Model[List[Doc], Floats2d]): usually ``bertflow.DocPooler.v1``;
        pooling "mean_all" (default, sentence-transformers' mean), "mean", "cls" or "max".
    score_scale (float): gold scores are divided by it to give the target cosine (STS-B: 5).
    loss_weight (float): scales this head's loss and gradient (multitask training); default 1.
    zero_shot_guard (bool): never score below the untrained encoder. At initialize the head
        keeps a copy of the encoder as it is then (pre-trained); each evaluation during
        training scores the fine-tuned and the untrained embedding on the dev pairs and
        keeps the better one. The untrained one, if it wins, is saved with the head and
        costs a second encoder pass per doc at inference; the fine-tuned one costs nothing.
        Default false.
    """
    return SimilarityHead(nlp.vocab, model, name, score_scale=score_scale, scorer=scorer, loss_weight=loss_weight,
                          zero_shot_guard=zero_shot_guard)


def _normalise(X: numpy.ndarray) -> numpy.ndarray:
    norms = numpy.linalg.norm(X, axis=-1, keepdims=True)
    return X / numpy.maximum(norms, 1e-12)


def _vector_of(obj) -> Optional[numpy.ndarray]:
    if isinstance(obj, Doc):
        return obj._.sim_vector
    if isinstance(obj, Span):
        return span_vector(obj)
    vector = getattr(obj, "vector", None)
    return None if vector is None else _normalise(numpy.asarray(vector, dtype="f"))


def _similarity(a, b) -> float:
    va, vb = _vector_of(a), _vector_of(b)
    if va is None or vb is None or not va.size or not vb.size:
        raise BertflowError(Errors.SIM002.format(a=a, b=b))
    return float(numpy.dot(va, vb))


def span_vector(span: Span) -> numpy.ndarray:
    """Mean of the span's token vectors (their wordpieces in the shared encoder's output), normalised."""
    data = span.doc._.trf_data
    if data is None or "last_hidden_state" not in data.model_output:
        return numpy.zeros((0,), dtype="f")
    hidden = numpy.asarray(data.model_output["last_hidden_state"])
    flat = hidden.reshape(-1, hidden.shape[-1])
    lengths = numpy.asarray(data.align.lengths)
    starts = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]])
    index = numpy.asarray(data.align.dataXd).ravel()
    rows = [index[starts[i]: starts[i] + lengths[i]] for i in range(span.start, span.end)]
    rows = numpy.unique(numpy.concatenate(rows)) if rows else numpy.zeros((0,), dtype="int64")
    if not len(rows):
        return numpy.zeros((flat.shape[-1],), dtype="f")
    return _normalise(flat[rows].mean(axis=0))


def _doc_vector(doc: Doc):
    return doc._.sim_vector


def _doc_has_vector(doc: Doc) -> bool:
    return doc._.sim_vector is not None


def _span_has_vector(span) -> bool:
    return True


def _install_hooks(doc: Doc) -> None:
    doc.user_hooks.update(vector=_doc_vector, has_vector=_doc_has_vector, similarity=_similarity)
    doc.user_span_hooks.update(vector=span_vector, has_vector=_span_has_vector, similarity=_similarity)


ZERO_SHOT_FILE = "zero_shot_encoder"


class SimilarityHead(HeadPipe):
    def __init__(self, vocab, model: Model, name: str = "bertflow_similarity", *, score_scale: float = 5.0,
                 scorer: Optional[Callable] = None, loss_weight: float = 1.0, zero_shot_guard: bool = False):
        install_extensions()
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight, score_scale=float(score_scale),
                         zero_shot_guard=bool(zero_shot_guard), source="fine_tuned")
        self.zero_shot: Optional[PretrainedCopy] = None  # the untrained encoder, while guarded or chosen
        self._guarding = False  # choosing at each evaluation: only in the run that took the copy

    # ---- the zero-shot guard ----

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = list(docs)
        if self.cfg.get("source") == "zero_shot":
            return self.zero_shot_vectors(docs)
        return super().predict(docs)

    def zero_shot_vectors(self, docs: List[Doc]) -> Floats2d:
        """The untrained encoder's embedding of docs the shared encoder already
        encoded: the copy's last hidden state over the same rows, pooled as the
        head pools."""
        if self.zero_shot is None:
            raise BertflowError(Errors.SIM003.format(name=self.name))
        live = [doc for doc in docs if doc._.trf_data is not None and len(doc._.trf_data.wordpieces.lengths)]
        hidden = iter(self.zero_shot.last_hidden_states([doc._.trf_data for doc in live]))
        datas = []
        for doc in docs:
            data = doc._.trf_data
            if data is not None and len(data.wordpieces.lengths):
                data = TransformerData(wordpieces=data.wordpieces, align=data.align,
                                       model_output={"last_hidden_state": self.model.ops.asarray(next(hidden))})
            datas.append(data if data is not None else TransformerData.empty())
        return self.model.get_ref("pool").predict(datas)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Optional[float]]:
        """The scorer's figures; under the guard, during training, for the better
        of the fine-tuned and the untrained embedding, which the head then uses
        (and ``sim_spearman_fine_tuned`` / ``sim_spearman_zero_shot`` beside)."""
        examples = list(examples)
        if not self._guarding or self.scorer is None:
            return super().score(examples, **kwargs)
        docs = [eg.predicted for eg in examples]
        results = {}
        for source in ("fine_tuned", "zero_shot"):
            vectors = super().predict(docs) if source == "fine_tuned" else self.zero_shot_vectors(docs)
            self.set_annotations(docs, vectors)
            results[source] = (self.scorer(examples, **kwargs), vectors)
        spearman = {source: scores.get("sim_spearman") for source, (scores, _) in results.items()}
        best = "zero_shot" if (spearman["zero_shot"] or -2.0) > (spearman["fine_tuned"] or -2.0) else "fine_tuned"
        self.cfg["source"] = best
        scores, vectors = results[best]
        self.set_annotations(docs, vectors)
        return {**scores, **{f"sim_spearman_{source}": value for source, value in spearman.items()}}

    def to_disk(self, path, *, exclude=SimpleFrozenList()) -> None:
        super().to_disk(path, exclude=exclude)
        copy_path = Path(path) / ZERO_SHOT_FILE
        if self.cfg.get("source") == "zero_shot" and self.zero_shot is not None:
            copy_path.write_bytes(self.zero_shot.to_bytes())
        elif copy_path.exists():  # left by an earlier save into this directory (spacy train re-saves model-best)
            copy_path.unlink()

    def to_bytes(self, *, exclude=SimpleFrozenList()) -> bytes:
        data = super().to_bytes(exclude=exclude)
        if self.cfg.get("source") != "zero_shot" or self.zero_shot is None:
            return data
        msg = srsly.msgpack_loads(data)
        msg[ZERO_SHOT_FILE] = self.zero_shot.to_bytes()
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes, *, exclude=SimpleFrozenList()) -> "SimilarityHead":
        msg = srsly.msgpack_loads(bytes_data)
        saved = msg.pop(ZERO_SHOT_FILE, None)
        super().from_bytes(srsly.msgpack_dumps(msg), exclude=exclude)
        self._guarding, self.zero_shot = False, None
        if self.cfg.get("source") == "zero_shot":
            if saved is None:
                raise BertflowError(Errors.SIM004.format(name=self.name))
            self.zero_shot = PretrainedCopy.from_bytes(saved, where=f"{self.name!r}'s bytes")
        return self

    def from_disk(self, path, *, exclude=SimpleFrozenList()) -> "SimilarityHead":
        super().from_disk(path, exclude=exclude)
        self._guarding = False  # a saved head's choice is final: evaluating it again must not change it
        self.zero_shot = None
        copy_path = Path(path) / ZERO_SHOT_FILE
        if self.cfg.get("source") == "zero_shot":
            if not copy_path.exists():
                raise BertflowError(Errors.SIM005.format(name=self.name, copy_path=copy_path))
            self.zero_shot = PretrainedCopy.from_bytes(copy_path.read_bytes(), where=str(copy_path))
        return self

    def set_annotations(self, docs: Iterable[Doc], vectors: Floats2d) -> None:
        docs = list(docs)
        set_doc_values(docs, "sim_vector", _normalise(self.model.ops.to_numpy(vectors)))
        for doc in docs:
            _install_hooks(doc)

    def is_annotated(self, example: Example) -> bool:
        ref = example.reference
        return ref._.sim_group is not None and ref._.sim_score is not None

    def get_loss(self, examples: Iterable[Example], vectors: Floats2d):
        """CosineSimilarityLoss over the complete pairs of the batch; other docs give no loss."""
        examples = list(examples)
        X = self.model.ops.to_numpy(vectors).astype("float64")
        norms = numpy.maximum(numpy.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        U = X / norms
        pairs = complete_pairs(examples)
        d_X = numpy.zeros_like(X)
        loss = 0.0
        n = loss_denominator(len(pairs))  # the batch-wide mean under data parallelism
        for a, b in pairs:
            target = float(examples[a].reference._.sim_score) / self.cfg["score_scale"]
            cos = float(U[a] @ U[b])
            loss += (cos - target) ** 2
            d_cos = 2.0 * (cos - target) / n
            d_X[a] += d_cos * (U[b] - cos * U[a]) / norms[a]
            d_X[b] += d_cos * (U[a] - cos * U[b]) / norms[b]
        return loss / n, self.model.ops.asarray2f(d_X.astype("f"))

    def get_distill_loss(self, examples: Iterable[Example], teacher_vectors: Floats2d, vectors: Floats2d, *,
                         temperature: float = 1.0):
        """``bertflow distill``: cosine distance to the teacher's sentence vector
        (what ``doc.similarity`` compares), mean over the docs; no temperature."""
        return cosine_distance_loss(vectors, teacher_vectors)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        self.model.initialize(X=self.sample_docs(get_examples, nlp))
        self.cfg["source"] = "fine_tuned"
        self.zero_shot, self._guarding = None, False
        if self.cfg.get("zero_shot_guard"):
            if nlp is None:
                raise BertflowError(Errors.SIM006.format(name=self.name))
            self.zero_shot, self._guarding = PretrainedCopy.of_encoder(nlp, self.name), True

    def embed(self, docs: List[Doc]) -> numpy.ndarray:
        """Normalised embeddings of docs that already went through the encoder."""
        return _normalise(self.model.ops.to_numpy(self.predict(docs)))


# ---- cross-encoder: bertflow_pair_classifier ---------------------------------------------------------

@Language.factory(
    "bertflow_pair_classifier",
    assigns=["doc._.pair_score", "doc.cats"],
    requires=["doc._.text_pair"],
    default_config={
        "model": {"@architectures": "bertflow.PairClassifierHead.v1", "mode": "regression", "pooling": "pooler",
                  "dropout": 0.1, "grad_factor": 1.0},
        "score_scale": 5.0,
        "loss_weight": 1.0, "learn_rate_scale": 1.0,
        "scorer": {"@scorers": "bertflow.pair_scorer.v1"},
    },
    default_score_weights={"pair_spearman": 1.0, "pair_pearson": 0.0, "pair_acc": 0.0, "pair_macro_f": 0.0},
)
def make_pair_classifier(nlp: Language, name: str, model: Model, score_scale: float, scorer: Callable,
                         loss_weight: float = 1.0, learn_rate_scale: float = 1.0) -> "PairClassifier":
    """A cross-encoder head: set ``doc._.text_pair`` to the first sentence, the doc is the second.
    ``loss_weight`` scales its loss and gradient (multitask training); ``learn_rate_scale``
    multiplies the optimizer's learning rate for its own weights."""
    return PairClassifier(nlp.vocab, model, name, score_scale=score_scale, scorer=scorer, loss_weight=loss_weight,
                          learn_rate_scale=learn_rate_scale)


class PairClassifier(HeadPipe):
    def __init__(self, vocab, model: Model, name: str = "bertflow_pair_classifier", *, score_scale: float = 5.0,
                 scorer: Optional[Callable] = None, loss_weight: float = 1.0,
                 learn_rate_scale: float = 1.0):
        install_extensions()
        super().__init__(vocab, model, name, scorer=scorer, loss_weight=loss_weight,
                         learn_rate_scale=learn_rate_scale, score_scale=float(score_scale),
                         labels=[])

    @property
    def regression(self) -> bool:
        return self.model.attrs.get("mode", "regression") == "regression"

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for doc, row in zip(docs, scores):
            if self.regression:
                doc._.pair_score = float(row[0]) * self.cfg["score_scale"]
            else:
                doc.cats.update({label: float(v) for label, v in zip(self.labels, row)})

    def is_annotated(self, example: Example) -> bool:
        ref = example.reference
        return ref._.text_pair is not None and (ref._.sim_score is not None if self.regression else bool(ref.cats))

    def get_loss(self, examples: Iterable[Example], scores: Floats2d):
        examples = list(examples)
        ops = self.model.ops
        if self.regression:
            truths = numpy.full((len(examples), 1), numpy.nan, dtype="f")
            for i, eg in enumerate(examples):  # a pair doc: text_pair set (a bi-encoder doc has none)
                if eg.reference._.sim_score is not None and eg.reference._.text_pair is not None:
                    truths[i, 0] = float(eg.reference._.sim_score) / self.cfg["score_scale"]
            return binary_cross_entropy(scores, ops.asarray2f(truths))
        index = {label: i for i, label in enumerate(self.labels)}
        truths = numpy.zeros((len(examples), len(index)), dtype="f")
        for i, eg in enumerate(examples):
            if eg.reference._.text_pair is None:
                continue
            for label, value in eg.reference.cats.items():
                if label not in index:
                    raise BertflowError(Errors.SIM008.format(
                                            label=label,
                                            name=self.name,
                                            labels=self.labels,
                                            doc_start=eg.reference.text[:40],
                                        ))
                truths[i, index[label]] = value
        mask = annotation_mask(examples, lambda doc: bool(doc.cats) and doc._.text_pair is not None)
        return softmax_cross_entropy(scores, ops.asarray2f(truths), ops.asarray1f(mask))

    def get_distill_loss(self, examples: Iterable[Example], teacher_scores: Floats2d, scores: Floats2d, *,
                         temperature: float = 1.0):
        """``bertflow distill``, on the docs with a second text: regression
        matches the teacher's score (binary KL to its sigmoid output, the loss
        training uses, with no temperature); classification the KL divergence
        to its temperature-softened label distribution."""
        mask = numpy.asarray([eg.predicted._.text_pair is not None for eg in examples], dtype="f")
        if self.regression:
            return soft_target_loss(scores, teacher_scores, activation="sigmoid", mask=mask)
        return soft_target_loss(scores, teacher_scores, temperature=temperature, activation="softmax", mask=mask)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Iterable[str]] = None) -> None:
        if not self.regression:
            if labels is None:
                labels = sorted({label for eg in get_examples() for label in eg.reference.cats})
            labels = list(labels)
            if len(labels) < 2:
                raise BertflowError(Errors.SIM007.format(name=self.name, labels=labels))
            self.cfg["labels"] = labels
            self.model.get_ref("output_layer").set_dim("nO", len(labels))
        self.model.initialize(X=self.sample_docs(get_examples, nlp))
