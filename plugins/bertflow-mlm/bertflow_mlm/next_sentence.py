"""BERT's next-sentence task: the sentence pairs it trains on, and the
``doc._.is_next`` label they carry.

``bertflow_mlm.next_sentence_pairs.v1`` is a pair maker for
``bertflow.TextCorpus.v1``'s ``pairs``: each doc the corpus yields is a
sentence B with ``doc._.text_pair`` = the sentence A before it in its
document (``doc._.is_next`` True) or, half of the time, a sentence of an
earlier document (False).
"""
import random
from collections import deque
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry

IS_NEXT = "is_next"

Pairs = Iterator[Tuple[str, str, Dict[str, Any]]]


def install_extensions() -> None:
    """``doc._.is_next`` (Optional[bool]): whether the doc's text followed
    ``doc._.text_pair`` in its document; None on docs that are no such pair."""
    if not Doc.has_extension(IS_NEXT):
        Doc.set_extension(IS_NEXT, default=None)


def next_sentence_pairs(documents: Iterable[List[str]], rng: random.Random, pool_size: int = 1000) -> Pairs:
    """For each two consecutive sentences (A, B) of a document, (A, B, is_next
    True) half of the time, else (A, R, False) with R a sentence of an earlier
    document (a reservoir of ``pool_size`` recent ones). Before any other
    document has been read, B is kept (True)."""
    install_extensions()
    pool: deque = deque(maxlen=pool_size)
    for sentences in documents:
        for a, b in zip(sentences, sentences[1:]):
            if pool and rng.random() < 0.5:
                yield a, pool[rng.randrange(len(pool))], {IS_NEXT: False}
            else:
                yield a, b, {IS_NEXT: True}
        pool.extend(sentences)


@registry.misc("bertflow_mlm.next_sentence_pairs.v1")
def make_next_sentence_pairs(enabled: bool = True, pool_size: int = 1000
                             ) -> Optional[Callable[[Iterable[List[str]], random.Random], Pairs]]:
    """The pair maker for ``[corpora.*.pairs]``; ``enabled = false`` gives None
    (documents, no pairs), so a project can switch the task with one override."""
    if not enabled:
        return None

    def pairs(documents: Iterable[List[str]], rng: random.Random) -> Pairs:
        return next_sentence_pairs(documents, rng, pool_size)

    return pairs
