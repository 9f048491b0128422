"""Padding-free inference (``bertflow.encoder.packed``): a batch of texts of
mixed lengths gives, at every real wordpiece, what the padded Hugging Face
forward gives, in one call and without computing the padding."""
import numpy
import pytest
import torch

from bertflow.encoder.lengths import length_buckets
from bertflow.encoder.packed import ATTENTION_BUCKET_RATIO, packable, packed_forward
from bertflow.encoder.precision import quantize_int8

SENTENCES = ["a cat", "the dog ran on the mat and the cat sat on the dog", "hi",
             "the mat", "one cat sat on the mat and looked at the dog for a long time"]


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(str(tiny_bert_dir)).eval(), AutoTokenizer.from_pretrained(str(tiny_bert_dir))


def padded_and_packed(module, batch):
    with torch.inference_mode():
        padded = module(**batch, output_hidden_states=True)
        packed = packed_forward(module, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                                keep=len(padded.hidden_states))
    return padded, packed


@pytest.mark.parametrize("pairs", [False, True])
def test_packed_forward_equals_the_padded_forward_at_every_real_wordpiece(bert, pairs):
    module, tokenizer = bert
    batch = tokenizer(SENTENCES, SENTENCES[::-1] if pairs else None, padding=True, return_tensors="pt")
    assert batch["attention_mask"].float().mean() < 0.8  # a fifth or more of the batch is padding
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(length_buckets(lengths, ratio=ATTENTION_BUCKET_RATIO)) > 1  # attention runs in groups
    padded, packed = padded_and_packed(module, batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed.last_hidden_state[real], padded.last_hidden_state[real], atol=1e-5, rtol=1e-4)
    assert len(packed.hidden_states) == len(padded.hidden_states) == module.config.num_hidden_layers + 1
    for mine, theirs in zip(packed.hidden_states, padded.hidden_states):
        torch.testing.assert_close(mine[real], theirs[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed.pooler_output, padded.pooler_output, atol=1e-5, rtol=1e-4)
    assert packed.last_hidden_state[~real].abs().max() == 0  # padding is never computed
    assert packed.hidden_states[-1] is packed.last_hidden_state


def test_packed_forward_runs_the_int8_copy_with_fused_projections(bert):
    """The int8 copy (Q/K/V fused into one quantised projection) runs packed
    through its own modules: close to its padded forward (dynamic int8 scales
    see the padded rows there, so not equal) and to fp32."""
    module, tokenizer = bert
    int8 = quantize_int8(module)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    padded, packed = padded_and_packed(int8, batch)
    real = batch["attention_mask"].bool()
    scale = padded.last_hidden_state[real].abs().max()
    assert (packed.last_hidden_state[real] - padded.last_hidden_state[real]).abs().max() < 0.05 * scale
    with torch.inference_mode():
        fp32 = module(**batch).last_hidden_state
    assert (packed.last_hidden_state[real] - fp32[real]).abs().max() < 0.1 * scale


def test_only_encoders_laid_out_as_bert_are_packed(bert):
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    module, _ = bert
    assert packable(module)
    small = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    assert packable(BertModel(BertConfig(**small)))
    # relative position scores live inside the attention that packing replaces
    assert not packable(BertModel(BertConfig(**small, position_embedding_type="relative_key")))
    assert not packable(DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)))
    assert not packable(torch.nn.Linear(4, 4))
    watched = BertModel(BertConfig(**small))
    watched.register_forward_hook(lambda *args: None)  # a hook on the forward keeps the forward
    assert not packable(watched)


def test_the_encoder_runs_a_mixed_batch_packed_in_one_call_with_the_padded_results(make_nlp, monkeypatch):
    """``nlp.pipe`` over texts of mixed lengths: one packed call per batch, and
    each doc's hidden states equal one padded call's."""
    import bertflow.encoder.hf_calls as hf_calls

    nlp = make_nlp(keep_layers=2)
    nlp.initialize()
    texts = ["a cat", " ".join(["the dog ran"] * 6), "the dog", "hi", " ".join(["a mat"] * 9), "one"]
    calls = []
    original = hf_calls._inference_call

    def counting(*args, **kwargs):
        calls.append(kwargs.get("packed", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(hf_calls, "_inference_call", counting)

    def real_rows(docs):
        out = []
        for doc in docs:
            n = doc._.trf_data.wordpieces.lengths[0]
            hidden = doc._.trf_data.model_output
            out.append([numpy.asarray(hidden["last_hidden_state"])[:, :n].copy()]
                       + [numpy.asarray(h)[:, :n].copy() for h in hidden["hidden_states"]])
        return out

    packed = real_rows(nlp.pipe(texts, batch_size=8))
    assert calls == [True]
    calls.clear()
    monkeypatch.setattr(hf_calls, "packable", lambda module: False)
    monkeypatch.setattr(hf_calls, "bucket_plan", lambda wordpieces, **_: None)
    padded = real_rows(nlp.pipe(texts, batch_size=8))
    assert calls == [False]
    for mine, theirs in zip(packed, padded):
        for a, b in zip(mine, theirs):
            numpy.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
