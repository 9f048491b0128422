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
- ``doc._.is_next`` (Optional[bool]): on a ``TextCorpus`` pair (``next_sentence =
  true``), whether the doc's text followed ``text_pair`` in its document (True)
  or is a sentence drawn from another document (False).
"""
from spacy.tokens import Doc

TEXT_PAIR = "text_pair"
TRF_DATA = "trf_data"
TRF_WINDOWS = "trf_windows"
RAW_TEXT = "raw_text"
IS_NEXT = "is_next"


def install_extensions() -> None:
    for name in (TEXT_PAIR, TRF_DATA, TRF_WINDOWS, IS_NEXT):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    if not Doc.has_extension(RAW_TEXT):
        Doc.set_extension(RAW_TEXT, default=False)


# The input extension is part of the public contract: it exists as soon as bertflow is imported,
# so converters and user code can set doc._.text_pair before any encoder is created.
install_extensions()
