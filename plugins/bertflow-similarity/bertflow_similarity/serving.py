"""``bertflow serve`` endpoints of a pipeline with a similarity head:
``POST /similarity`` (cosine of text pairs) and ``POST /search`` (the most
similar documents for each query), both with the bi-encoder's embeddings."""
from typing import Any, Dict, List

from spacy.language import Language

from bertflow.api import BertflowError, EndpointSpec

from .component import SimilarityHead
from .errors import Errors
from .retrieval import embed, search


def _strings(payload: Dict[str, Any], key: str) -> List[str]:
    value = payload.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BertflowError(Errors.SIM019.format(where=f"body.{key}", what="a non-empty list of strings"))
    return value


def similarity(nlp: Language, payload: Dict[str, Any]) -> Dict[str, Any]:
    """``{"pairs": [[a, b], ...]}`` -> ``{"scores": [cosine, ...]}`` (what ``doc_a.similarity(doc_b)`` gives)."""
    pairs = payload.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise BertflowError(Errors.SIM019.format(where="body.pairs", what="a non-empty list of [text, text] pairs"))
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise BertflowError(Errors.SIM019.format(where=f"body.pairs[{i}]", what="a pair of strings [text, text]"))
    texts = sorted({t for pair in pairs for t in pair})
    row = {t: i for i, t in enumerate(texts)}
    vectors = embed(nlp, texts)  # each distinct text once, L2-normalised
    return {"scores": [float(vectors[row[a]] @ vectors[row[b]]) for a, b in pairs]}


def search_endpoint(nlp: Language, payload: Dict[str, Any]) -> Dict[str, Any]:
    """``{"queries": [...], "documents": [...], "top_k": 5}`` -> ``{"results": [[{index, text, score}, ...], ...]}``."""
    top_k = payload.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise BertflowError(Errors.SIM019.format(where="body.top_k", what="an integer"))
    return {"results": search(nlp, _strings(payload, "queries"), _strings(payload, "documents"), top_k=top_k)}


def endpoints(nlp: Language) -> List[EndpointSpec]:
    if not any(isinstance(pipe, SimilarityHead) for _, pipe in nlp.pipeline):
        return []
    return [
        EndpointSpec("similarity", similarity, "Cosine similarity of text pairs (the similarity head's vectors)",
                     {"pairs": [["A man is playing a guitar.", "Someone plays an instrument."]]}),
        EndpointSpec("search", search_endpoint, "The documents most similar to each query, best first",
                     {"queries": ["guitar music"], "documents": ["A man plays guitar.", "A dog runs."], "top_k": 1}),
    ]
