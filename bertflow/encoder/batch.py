"""``EncoderBatch``: spacy-transformers' ``FullTransformerBatch`` for windowed,
possibly paired docs. Each doc owns a contiguous block of rows and its own
alignment, so splitting per doc needs no span bookkeeping."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData
from thinc.api import get_array_module, torch2xp, xp2torch
from thinc.types import Ragged
from transformers.utils import ModelOutput

from bertflow.encoder.store import DocOutput, OutputStore


@dataclass
class EncoderBatch(FullTransformerBatch):
    doc_rows: List[Tuple[int, int]] = field(default_factory=list)
    doc_aligns: List[Optional[Ragged]] = field(default_factory=list)
    windows: List[Optional[dict]] = field(default_factory=list)

    @classmethod
    def empty_for(cls, n_docs: int, windows: List[Optional[dict]]) -> "EncoderBatch":
        base = FullTransformerBatch.empty(n_docs)
        return cls(
            spans=base.spans,
            wordpieces=base.wordpieces,
            model_output=base.model_output,
            align=base.align,
            cached_doc_data=base.cached_doc_data,
            doc_rows=[(0, 0)] * n_docs,
            doc_aligns=[None] * n_docs,
            windows=windows,
        )

    def output_store(self) -> Optional[OutputStore]:
        """This pass's outputs as one ``OutputStore`` (None for a pass without rows)."""
        if not self.doc_rows or self.wordpieces.input_ids is None or not len(self.wordpieces.lengths):
            return None
        xp_output: Dict[str, object] = {}
        for key, value in self.model_output.items():
            if isinstance(value, torch.Tensor):
                xp_output[key] = torch2xp(value)
            elif isinstance(value, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in value):
                xp_output[key] = [torch2xp(t) for t in value]
        seq_len = self.wordpieces.input_ids.shape[1]
        return OutputStore.from_pass(xp_output, self.doc_rows, self.doc_aligns, self.wordpieces.lengths, seq_len)

    def split_by_doc(self) -> List[TransformerData]:
        return split_docs([self])[0]

    def gradients(self, d_docs: Sequence[Optional[Dict[str, object]]]) -> ModelOutput:
        """Assemble per-doc output gradients into one ModelOutput shaped like
        the batch outputs. Each entry of ``d_docs`` is None (no gradient) or a
        dict like {"last_hidden_state": array, "hidden_states": [arrays]}."""
        grads = ModelOutput()
        for key, value in self.model_output.items():
            parts = [(rows, d[key]) for rows, d in zip(self.doc_rows, d_docs) if d is not None and key in d]
            if not parts:
                continue
            if isinstance(value, torch.Tensor):
                grads[key] = _assemble(value, parts)
            else:
                grads[key] = tuple(
                    _assemble(t, [(rows, g[layer]) for rows, g in parts]) for layer, t in enumerate(value)
                )
        return grads


def _assemble(like: torch.Tensor, parts) -> torch.Tensor:
    xp = get_array_module(parts[0][1])
    full = xp.zeros(tuple(like.shape), dtype="float32")
    for (start, n), grad in parts:
        full[start: start + n] = grad
    return xp2torch(full, device=like.device).to(like.dtype)


def split_docs(batches: Sequence[EncoderBatch]) -> List[List[TransformerData]]:
    """Each batch's per-doc outputs, all views into one ``OutputStore`` (the
    batches' outputs concatenated), so heads can treat docs from any of the
    batches as one batch. Docs without rows get an empty ``TransformerData``."""
    stores = [batch.output_store() for batch in batches]
    live = [s for s in stores if s is not None]
    merged = OutputStore.merge(live, get_array_module(live[0].outputs["last_hidden_state"])) if live else None
    result, offset = [], 0
    for batch, store in zip(batches, stores):
        outputs = []
        aligns = batch.doc_aligns
        live = getattr(aligns, "live", None)  # a DocAligns knows which docs have rows without making their Ragged
        for d, (start, n) in enumerate(batch.doc_rows):
            if store is None or not (live[d] if live is not None else aligns[d] is not None):
                outputs.append(TransformerData.empty())
            else:
                outputs.append(DocOutput.lazy(merged, offset + d, batch.wordpieces, start, n, aligns, d))
        if store is not None:
            offset += store.n_docs
        batch.cached_doc_data = outputs
        result.append(outputs)
    return result


def length_sorted_batches(lengths: List[int], max_docs: int, max_items: int) -> List[List[int]]:
    """Indices grouped into batches of similar length, longest first: each batch
    holds at most ``max_docs`` items and at most ``max_items`` once padded to its
    longest (a single item longer than that is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: List[List[int]] = []
    for i in order:
        if batches and len(batches[-1]) < max_docs and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_items:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
