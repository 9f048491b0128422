"""bertflow-similarity: sentence embeddings (bi-encoder) with spaCy's
similarity hooks and semantic search, and a cross-encoder for sentence pairs."""
from .extensions import install_extensions
from .search import score_pairs, search

install_extensions()

__all__ = ["search", "score_pairs", "install_extensions"]
