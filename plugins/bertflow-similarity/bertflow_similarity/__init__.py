"""bertflow-similarity: sentence embeddings (bi-encoder) with spaCy's
similarity hooks and semantic search, and a cross-encoder for sentence pairs.

The names below are imported on first use, so loading the plugin (its entry
point is ``bertflow_similarity.plugin``) imports no deep-learning library.
"""
import importlib

_WHERE = {"search": ".retrieval", "score_pairs": ".retrieval", "install_extensions": ".extensions"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'bertflow_similarity' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
