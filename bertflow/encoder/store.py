"""Batch-level encoder outputs, so that heads work on a whole batch at once.

Each doc's ``doc._.trf_data`` is a ``DocOutput``: spacy-transformers'
``TransformerData`` (the doc's rows of the outputs, shape (rows, seq_len,
width), and its token alignment), which any listener can read as before,
plus the ``OutputStore`` it is a view into and its index there. The store
keeps the outputs of every doc of an encoder pass (or of the sub-batches of
one sort buffer, concatenated) flat, one row per wordpiece position, with the
per-doc and per-row bookkeeping as integer arrays. A head given docs from one
store gathers what it needs for all of them with one index array
(``OutputStore.token_entries``, ``OutputStore.pooled``) and reduces it with
one segment operation, instead
of a loop over docs; a few array operations per batch, whatever its size, which
is what a GPU needs. Docs from elsewhere (a plain ``TransformerData``) take the
per-doc path, with the same arithmetic.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
from spacy_transformers.data_classes import TransformerData, WordpieceBatch
from thinc.types import Ragged
from transformers.utils import ModelOutput

def ragged_range(starts: numpy.ndarray, counts: numpy.ndarray) -> numpy.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, without the loop."""
    counts = numpy.asarray(counts, dtype="int64")
    total = int(counts.sum())
    if not total:
        return numpy.zeros((0,), dtype="int64")
    return numpy.repeat(numpy.asarray(starts, dtype="int64") - _starts(counts), counts) + numpy.arange(total)


class DocOutput(TransformerData):
    """``TransformerData`` that knows the batch it came from: ``store`` and
    its ``index`` there. Its ``wordpieces``, ``model_output`` and ``align``
    (views into the batch's arrays) are made the first time they are read:
    heads working on the store never read them, so a pass does not build
    three objects per doc for nothing. Copying or pickling it gives a plain
    ``TransformerData`` of the doc's own data (a doc copy must not drag the
    whole batch along)."""

    def __init__(self, wordpieces: Optional[WordpieceBatch] = None, model_output: Optional[ModelOutput] = None,
                 align: Optional[Ragged] = None, store: Optional["OutputStore"] = None, index: int = -1):
        self.store = store
        self.index = index
        self._wordpieces, self._model_output, self._align = wordpieces, model_output, align
        self._source = None  # (the pass's WordpieceBatch, the doc's first row there, its rows, aligns, doc)

    @classmethod
    def lazy(cls, store: "OutputStore", index: int, batch_wordpieces: WordpieceBatch, start: int, n_rows: int,
             aligns: Sequence[Optional[Ragged]], doc: int) -> "DocOutput":
        """Doc ``index`` of ``store``: rows ``start`` to ``start + n_rows`` of
        ``batch_wordpieces``, alignment ``aligns[doc]``, all read on first use."""
        out = cls(store=store, index=index)
        out._source = (batch_wordpieces, start, n_rows, aligns, doc)
        return out

    @property
    def wordpieces(self) -> WordpieceBatch:
        if self._wordpieces is None and self._source is not None:
            batch, start, n, _, _ = self._source
            self._wordpieces = batch[start: start + n]
        return self._wordpieces

    @wordpieces.setter
    def wordpieces(self, value: WordpieceBatch) -> None:
        self._wordpieces = value

    @property
    def model_output(self) -> ModelOutput:
        if self._model_output is None and self.store is not None:
            self._model_output = self.store.doc_model_output(self.index)
        return self._model_output

    @model_output.setter
    def model_output(self, value: ModelOutput) -> None:
        self._model_output = value

    @property
    def align(self) -> Ragged:
        if self._align is None and self._source is not None:
            _, _, _, aligns, doc = self._source
            self._align = aligns[doc]
        return self._align

    @align.setter
    def align(self, value: Ragged) -> None:
        self._align = value

    def __repr__(self) -> str:
        return repr(self._plain())

    def _plain(self) -> TransformerData:
        return TransformerData(wordpieces=self.wordpieces, model_output=self.model_output, align=self.align)

    def __deepcopy__(self, memo):
        import copy

        return copy.deepcopy(self._plain(), memo)

    def __reduce__(self):
        return self._plain().__reduce__()


class OutputStore:
    """The encoder outputs of a set of docs, flat (see the module docstring).

    outputs: "last_hidden_state" (positions, width), "hidden_states" (a list
        of such arrays, one per kept layer), "pooler_output" (rows, width).
    Per doc d: ``pos_start[d]`` its first flat position, ``row_start[d]`` /
        ``n_rows[d]`` its rows, ``seq_len[d]`` the positions per row of its
        pass; ``tok_start[d]`` / ``n_tokens[d]`` its tokens in
        ``align_lengths``, ``ent_start[d]`` / ``n_entries[d]`` its entries in
        ``align_data`` (flat positions, grouped by token); ``own_start[d]`` /
        ``n_own[d]`` its own wordpieces, each once, in ``own``.
    Per row r: ``row_pos[r]`` its first flat position, ``row_len[r]`` its
        non-padding length.
    """

    INT_FIELDS = ("pos_start", "row_start", "n_rows", "seq_len", "tok_start", "n_tokens", "ent_start",
                  "n_entries", "own_start", "n_own", "row_pos", "row_len", "align_data", "align_lengths", "own")

    def __init__(self, outputs: Dict[str, object], n_positions: int, **fields: numpy.ndarray):
        self.outputs = outputs
        self.n_positions = int(n_positions)
        for name in self.INT_FIELDS:
            setattr(self, name, numpy.asarray(fields[name], dtype="int64"))

    @property
    def n_docs(self) -> int:
        return len(self.pos_start)

    @classmethod
    def from_pass(cls, xp_outputs: Dict[str, object], doc_rows: Sequence[Tuple[int, int]],
                  doc_aligns: Sequence[Optional[Ragged]], row_lengths: Sequence[int], seq_len: int) -> "OutputStore":
        """The store of one encoder pass: ``xp_outputs`` as the pass returns
        them (padded (rows, seq_len, width)), each doc's (first row, n rows)
        and alignment (flat indices into its own rows x seq_len)."""
        n_rows_total = len(row_lengths)
        outputs: Dict[str, object] = {}
        for key, value in xp_outputs.items():
            if key == "pooler_output":
                outputs[key] = value
            elif isinstance(value, list):
                outputs[key] = [v.reshape(-1, v.shape[-1]) for v in value]
            else:
                outputs[key] = value.reshape(-1, value.shape[-1])
        row_start = numpy.asarray([s for s, _ in doc_rows], dtype="int64")
        n_rows = numpy.asarray([n for _, n in doc_rows], dtype="int64")
        pos_start = row_start * seq_len
        flat = getattr(doc_aligns, "local", None)
        if flat is not None:  # a DocAligns: the batch's alignments are flat already
            n_tokens, n_entries = doc_aligns.n_tokens, doc_aligns.n_entries
            align_data = flat + numpy.repeat(pos_start, n_entries)
            align_lengths = doc_aligns.token_lengths
        else:
            n_tokens = numpy.asarray([len(a.lengths) if a is not None else 0 for a in doc_aligns], dtype="int64")
            n_entries = numpy.asarray([len(a.dataXd) if a is not None else 0 for a in doc_aligns], dtype="int64")
            live = [(a, p) for a, p in zip(doc_aligns, pos_start) if a is not None]
            align_data = (numpy.concatenate([numpy.asarray(a.dataXd, dtype="int64").reshape(-1) + p
                                             for a, p in live]) if live else numpy.zeros((0,), dtype="int64"))
            align_lengths = (numpy.concatenate([numpy.asarray(a.lengths, dtype="int64") for a, _ in live])
                             if live else numpy.zeros((0,), dtype="int64"))
        # each doc's own wordpieces, once each: positions never repeat across docs, so one sort
        # groups them by doc, in the order of the docs' positions
        own = numpy.unique(align_data)
        own_start = numpy.searchsorted(own, pos_start)
        own_end = numpy.searchsorted(own, pos_start + n_rows * seq_len)
        return cls(
            outputs, n_rows_total * seq_len,
            pos_start=pos_start, row_start=row_start, n_rows=n_rows,
            seq_len=numpy.full(len(doc_rows), seq_len), tok_start=_starts(n_tokens), n_tokens=n_tokens,
            ent_start=_starts(n_entries), n_entries=n_entries, own_start=own_start, n_own=own_end - own_start,
            row_pos=numpy.arange(n_rows_total) * seq_len, row_len=numpy.asarray(row_lengths),
            align_data=align_data, align_lengths=align_lengths, own=own,
        )

    @classmethod
    def merge(cls, stores: List["OutputStore"], xp) -> "OutputStore":
        """One store holding ``stores`` one after another (their docs keep
        their order: doc d of the second store is ``stores[0].n_docs + d``)."""
        if len(stores) == 1:
            return stores[0]
        pos = _starts([s.n_positions for s in stores])
        rows = _starts([len(s.row_pos) for s in stores])
        toks = _starts([len(s.align_lengths) for s in stores])
        ents = _starts([len(s.align_data) for s in stores])
        owns = _starts([len(s.own) for s in stores])
        shift = {"pos_start": pos, "row_pos": pos, "align_data": pos, "own": pos, "row_start": rows,
                 "tok_start": toks, "ent_start": ents, "own_start": owns}
        fields = {name: numpy.concatenate([getattr(s, name) + shift[name][i] if name in shift else getattr(s, name)
                                           for i, s in enumerate(stores)])
                  for name in cls.INT_FIELDS}
        outputs: Dict[str, object] = {}
        for key, value in stores[0].outputs.items():
            if isinstance(value, list):
                outputs[key] = [xp.concatenate([s.outputs[key][k] for s in stores]) for k in range(len(value))]
            else:
                outputs[key] = xp.concatenate([s.outputs[key] for s in stores])
        return cls(outputs, sum(s.n_positions for s in stores), **fields)

    def doc_output(self, d: int, wordpieces: WordpieceBatch, align: Ragged) -> DocOutput:
        """Doc ``d``'s ``DocOutput``: views of its rows, shaped (rows, seq_len, width)."""
        return DocOutput(wordpieces=wordpieces, model_output=self.doc_model_output(d), align=align, store=self, index=d)

    def doc_model_output(self, d: int) -> ModelOutput:
        """Doc ``d``'s outputs as the encoder pass gives them for one doc: views
        of its rows, shaped (rows, seq_len, width) (its rows of "pooler_output")."""
        out = ModelOutput()
        for key, value in self.outputs.items():
            out[key] = [self.doc_view(d, key, v) for v in value] if isinstance(value, list) \
                else self.doc_view(d, key, value)
        return out

    def doc_view(self, d: int, key: str, flat):
        """Doc ``d``'s part of ``flat`` (an array shaped like ``outputs[key]``,
        e.g. its gradient), shaped as the doc's own output: its rows of
        "pooler_output", else (rows, seq_len, width)."""
        n = int(self.n_rows[d])
        if key == "pooler_output":
            r = int(self.row_start[d])
            return flat[r: r + n]
        start, seq = int(self.pos_start[d]), int(self.seq_len[d])
        return flat[start: start + n * seq].reshape(n, seq, flat.shape[-1])

    # ---- what heads gather, for docs ``D`` (indices into this store) ----

    def token_entries(self, D: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Flat positions of the docs' aligned wordpieces (grouped by token,
        doc after doc) and the entries per token."""
        entries = self.align_data[ragged_range(self.ent_start[D], self.n_entries[D])]
        lengths = self.align_lengths[ragged_range(self.tok_start[D], self.n_tokens[D])]
        return entries, lengths

    def pooled(self, mode: str, D: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """What doc pooling ``mode`` reduces for each doc: indices (flat
        positions; rows of "pooler_output" for "pooler") and how many per doc."""
        if mode in ("cls", "pooler", "mean_all"):
            rows = ragged_range(self.row_start[D], self.n_rows[D])
            if mode == "pooler":
                return rows, self.n_rows[D]
            if mode == "cls":
                return self.row_pos[rows], self.n_rows[D]
            lengths = self.row_len[rows]
            per_doc = numpy.add.reduceat(lengths, _starts(self.n_rows[D])) if len(rows) else lengths
            return ragged_range(self.row_pos[rows], lengths), per_doc
        return self.own[ragged_range(self.own_start[D], self.n_own[D])], self.n_own[D]

    def doc_gradients(self, D: numpy.ndarray, key: str, d_flat, docs: Sequence[TransformerData]) -> List[TransformerData]:
        """Per-doc gradients (views of ``d_flat``, shaped like each doc's
        ``key`` output) for the docs ``D``, as listeners hand them back."""
        return [TransformerData(wordpieces=data.wordpieces, model_output=ModelOutput({key: self.doc_view(int(d), key, d_flat)}),
                                align=data.align) for d, data in zip(D, docs)]


def _starts(counts) -> numpy.ndarray:
    counts = numpy.asarray(counts, dtype="int64")
    return numpy.cumsum(counts) - counts


def has_output(data: TransformerData) -> bool:
    """Whether ``data`` holds encoder outputs (a doc without tokens has none)."""
    if isinstance(data, DocOutput) and data.store is not None and data._model_output is None:
        return True  # a doc of a store has rows; no need to make its per-doc views to know it
    hidden = data.model_output.get("last_hidden_state")
    return hidden is not None and hidden.size > 0


def store_groups(datas: Sequence[TransformerData]) -> Optional[List[Tuple[OutputStore, numpy.ndarray, numpy.ndarray]]]:
    """The docs with outputs, grouped by the store they are views into:
    (store, their indices in the store, their positions in ``datas``), in order
    of first appearance. None when any doc with outputs is not a view into a
    store (a plain ``TransformerData``): the caller takes its per-doc path."""
    groups: Dict[int, Tuple[OutputStore, List[int], List[int]]] = {}
    for i, data in enumerate(datas):
        if not has_output(data):
            continue
        store = getattr(data, "store", None)
        if store is None:
            return None
        entry = groups.get(id(store))
        if entry is None:
            entry = groups[id(store)] = (store, [], [])
        entry[1].append(data.index)
        entry[2].append(i)
    return [(store, numpy.asarray(D, dtype="int64"), numpy.asarray(where, dtype="int64"))
            for store, D, where in groups.values()]
