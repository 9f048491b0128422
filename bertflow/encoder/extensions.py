"""The Doc extensions the encoder reads and writes, installed by one idempotent function.

- ``doc._.text_pair`` (Optional[str]): a second text. When set, the encoder
  encodes ``(text_pair, doc.text)`` as a BERT pair ``[CLS] A [SEP] B [SEP]``
  (token_type_ids 0 for A, 1 for B) and aligns only the doc's own tokens.
  An empty or whitespace-only text_pair is no pair: the doc is encoded alone,
  exactly as with None.
- ``doc._.trf_data`` (TransformerData): spacy-transformers' per-doc output,
  written by the encoder component.
- ``doc._.trf_windows`` (dict): how the doc was windowed, written by the
  encoder component. Keys:
    ``n_windows`` (int) rows the doc used in the batch;
    ``n_wordpieces`` (int) the doc's own wordpieces;
    ``window`` / ``stride`` (int) the effective window size and step, in doc wordpieces;
    ``starts`` (Tuple[int, ...]) start of each window, in doc wordpieces;
    ``doc_offset`` (int) position of the doc's first wordpiece in every row
    (1, or ``pair_wordpieces + 2`` with a pair);
    ``pair_wordpieces`` (int) wordpieces of ``text_pair`` kept in every row;
    ``pair_truncated`` (bool) whether ``text_pair`` was cut to fit;
    ``truncated`` (bool) whether anything at all was cut (the doc never is).
- ``doc._.raw_text`` (bool): set on the reference docs of ``bertflow.TextCorpus.v1``:
  unlabelled text, which self-supervised heads (masked LM) train on and
  supervised heads find no annotation in.
"""
from typing import Any, Iterable

from spacy.tokens import Doc

TEXT_PAIR = "text_pair"
TRF_DATA = "trf_data"
TRF_WINDOWS = "trf_windows"
RAW_TEXT = "raw_text"


def install_extensions() -> None:
    for name in (TEXT_PAIR, TRF_DATA, TRF_WINDOWS):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    if not Doc.has_extension(RAW_TEXT):
        Doc.set_extension(RAW_TEXT, default=False)


def set_doc_values(docs: Iterable[Doc], name: str, values: Iterable[Any]) -> None:
    """``doc._.<name> = value`` for each doc and value, as one loop over
    ``doc.user_data``, where spaCy keeps a doc's extension values (under
    ``("._.", name, None, None)``), instead of one ``doc._`` object and
    attribute check per doc: a pipeline writes a few per doc, ten times
    faster this way. Checked against spaCy's own ``doc._`` the first time, so
    a spaCy that stores them elsewhere gets the plain assignment."""
    if not Doc.has_extension(name):
        raise AttributeError(f"Doc has no extension {name!r}: Doc.set_extension({name!r}, default=None) first.")
    if not _user_data_layout():
        for doc, value in zip(docs, values):
            setattr(doc._, name, value)
        return
    key = ("._.", name, None, None)
    for doc, value in zip(docs, values):
        doc.user_data[key] = value


def get_doc_value(doc: Doc, name: str, default: Any = None) -> Any:
    """``doc._.<name>`` read from ``doc.user_data`` (see ``set_doc_values``);
    ``default`` where the doc has no value (the extension's own default)."""
    if not _user_data_layout():
        return getattr(doc._, name) if Doc.has_extension(name) else default
    return doc.user_data.get(("._.", name, None, None), default)


_LAYOUT: list = []


def _user_data_layout() -> bool:
    """Whether spaCy keeps extension values where ``set_doc_values`` writes them."""
    if not _LAYOUT:
        from spacy.vocab import Vocab

        doc = Doc(Vocab(), words=["probe"])
        marker = object()
        doc._.trf_windows = marker
        _LAYOUT.append(doc.user_data.get(("._.", TRF_WINDOWS, None, None)) is marker)
    return _LAYOUT[0]


# The input extension is part of the public contract: it exists as soon as bertflow is imported,
# so converters and user code can set doc._.text_pair before any encoder is created.
install_extensions()
