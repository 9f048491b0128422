"""``bertflow.search`` (semantic search with the bi-encoder) and
``bertflow.score_pairs`` (the cross-encoder over many pairs)."""
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from bertflow.api import BertflowError

from .errors import Errors
from .component import PairClassifier, SimilarityHead


def _component(nlp: Language, kind: type, factory: str) -> str:
    names = [name for name, pipe in nlp.pipeline if isinstance(pipe, kind)]
    if not names:
        raise BertflowError(Errors.SIM015.format(factory=factory))
    return names[0]


def _encoder_and(nlp: Language, name: str) -> List[str]:
    """The components needed for ``name``'s output: the encoder(s) before it, and it."""
    upto = nlp.pipe_names[: nlp.pipe_names.index(name) + 1]
    return [n for n in upto if n == name or getattr(nlp.get_pipe(n), "listeners", None) is not None]


def embed(nlp: Language, texts: Iterable[Union[str, Doc]], *, batch_size: int = 256) -> numpy.ndarray:
    """L2-normalised bi-encoder embeddings, one row per text (only the encoder and the head run)."""
    name = _component(nlp, SimilarityHead, "bertflow_similarity")
    texts = list(texts)
    if not texts:
        return numpy.zeros((0, 0), dtype="f")
    # Length-sorted batches pad far less (as sentence-transformers does); rows go back in input order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i].text if isinstance(texts[i], Doc) else texts[i]))
    rows: List[Optional[numpy.ndarray]] = [None] * len(texts)
    with nlp.select_pipes(enable=_encoder_and(nlp, name)):
        for i, doc in zip(order, nlp.pipe((texts[i] for i in order), batch_size=batch_size)):
            rows[i] = doc._.sim_vector
    return numpy.stack(rows).astype("f")


def search(nlp: Language, queries: Sequence[Union[str, Doc]], documents: Sequence[Union[str, Doc]], *,
           top_k: int = 5, batch_size: int = 256, block: int = 1024) -> List[List[dict]]:
    """For each query, the ``top_k`` most similar documents (cosine), best first.

    Documents and queries are embedded in batches; scores are computed one
    block of ``block`` queries at a time against all documents (one matrix
    product per block), so memory stays at block x n_documents floats, never
    n_queries x n_documents.

    RETURNS (List[List[dict]]): per query, dicts with ``index`` (into
    ``documents``), ``text`` and ``score``.
    """
    if top_k < 1:
        raise BertflowError(Errors.SIM016.format(top_k=top_k))
    documents = list(documents)
    if not documents:
        return [[] for _ in queries]
    doc_vectors = embed(nlp, documents, batch_size=batch_size)
    query_vectors = embed(nlp, queries, batch_size=batch_size)
    k = min(top_k, len(documents))
    results: List[List[dict]] = []
    for start in range(0, len(query_vectors), block):
        scores = query_vectors[start: start + block] @ doc_vectors.T
        top = numpy.argpartition(-scores, k - 1, axis=1)[:, :k]
        for row, idx in zip(scores, top):
            idx = idx[numpy.argsort(-row[idx], kind="stable")]
            results.append([{"index": int(i), "text": documents[i] if isinstance(documents[i], str) else documents[i].text,
                             "score": float(row[i])} for i in idx])
    return results


def score_pairs(nlp: Language, pairs: Iterable[Tuple[str, str]], *, batch_size: int = 64) -> List[Union[float, dict]]:
    """Cross-encoder scores for (text_a, text_b) pairs, streamed through ``nlp.pipe``:
    a float per pair (regression) or its ``cats`` dict (classification)."""
    name = _component(nlp, PairClassifier, "bertflow_pair_classifier")
    head = nlp.get_pipe(name)

    def docs(order):
        for i in order:
            a, b = pairs[i]
            doc = nlp.make_doc(b)
            doc._.text_pair = a
            yield doc

    pairs = list(pairs)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # less padding
    out: List[Union[float, dict, None]] = [None] * len(pairs)
    with nlp.select_pipes(enable=_encoder_and(nlp, name)):
        for i, doc in zip(order, nlp.pipe(docs(order), batch_size=batch_size)):
            out[i] = doc._.pair_score if head.regression else dict(doc.cats)
    return out
