"""Doc helpers shared by the converter and ``bertflow.ask``."""
from typing import Optional

from spacy.tokens import Doc
from spacy.vocab import Vocab


def copy_tokens(doc: Doc, vocab: Optional[Vocab] = None) -> Doc:
    """A fresh Doc (in ``vocab``, default the doc's own) with ``doc``'s tokens
    and whitespace and nothing else: one tokenisation of a context serves many
    questions."""
    return Doc(vocab or doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
