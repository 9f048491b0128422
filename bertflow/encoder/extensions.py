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
"""
from spacy.tokens import Doc

TEXT_PAIR = "text_pair"
TRF_DATA = "trf_data"
TRF_WINDOWS = "trf_windows"


def install_extensions() -> None:
    for name in (TEXT_PAIR, TRF_DATA, TRF_WINDOWS):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


# The input extension is part of the public contract: it exists as soon as bertflow is imported,
# so converters and user code can set doc._.text_pair before any encoder is created.
install_extensions()
