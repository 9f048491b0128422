import copy
import random

import numpy
import pytest
from hypothesis import given, strategies as st
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import ModelOutput

from bertflow.encoder import plan_windows
from bertflow.errors import BertflowError
from conftest import token_vectors


def hf_forward(model_dir, input_ids, token_type_ids=None, attention_mask=None):
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    ids = torch.as_tensor(numpy.asarray(input_ids)).long()
    kwargs = {"input_ids": ids}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = torch.as_tensor(numpy.asarray(token_type_ids)).long()
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.as_tensor(numpy.asarray(attention_mask)).long()
    with torch.no_grad():
        return model(**kwargs).last_hidden_state.numpy()


def test_encoder_parity_single_text(make_nlp, tiny_bert_dir):
    nlp = make_nlp()
    doc = nlp("the cat sat on the mat in paris.")
    data = doc._.trf_data
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    expected_ids = tok("the cat sat on the mat in paris.")["input_ids"]
    assert data.wordpieces.input_ids[0].tolist() == expected_ids
    assert data.wordpieces.token_type_ids[0].tolist() == [0] * len(expected_ids)
    hf = hf_forward(tiny_bert_dir, [expected_ids])
    numpy.testing.assert_allclose(data.model_output["last_hidden_state"], hf, atol=1e-5)


def test_encoder_parity_pair(make_nlp, tiny_bert_dir):
    nlp = make_nlp()
    doc = nlp.make_doc("steve jobs founded apple in new york.")
    doc._.text_pair = "who founded apple?"
    doc = nlp(doc)
    data = doc._.trf_data
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    ref = tok("who founded apple?", "steve jobs founded apple in new york.")
    assert data.wordpieces.input_ids[0].tolist() == ref["input_ids"]
    assert data.wordpieces.token_type_ids[0].tolist() == ref["token_type_ids"]
    assert set(ref["token_type_ids"]) == {0, 1}
    hf = hf_forward(tiny_bert_dir, [ref["input_ids"]], [ref["token_type_ids"]])
    numpy.testing.assert_allclose(data.model_output["last_hidden_state"], hf, atol=1e-5)
    # only the doc's own tokens are aligned, all in segment B
    positions = numpy.asarray(data.align.dataXd).ravel()
    assert len(data.align.lengths) == len(doc)
    assert (data.wordpieces.token_type_ids[0][positions] == 1).all()
    assert doc._.trf_windows["pair_wordpieces"] == len(tok("who founded apple?", add_special_tokens=False)["input_ids"])


@pytest.mark.integration
def test_encoder_parity_minilm():
    import spacy
    from bertflow.encoder.names import resolve_encoder

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder")
    path = resolve_encoder("minilm-l6")
    tok = AutoTokenizer.from_pretrained(path)
    for pair in (None, "Who founded Apple?"):
        doc = nlp.make_doc("Apple was founded by Steve Jobs in Cupertino.")
        doc._.text_pair = pair
        doc = nlp(doc)
        data = doc._.trf_data
        ref = tok(pair, doc.text) if pair else tok(doc.text)
        assert data.wordpieces.input_ids[0].tolist() == ref["input_ids"]
        assert data.wordpieces.token_type_ids[0].tolist() == ref["token_type_ids"]
        hf = hf_forward(path, [ref["input_ids"]], [ref["token_type_ids"]])
        numpy.testing.assert_allclose(data.model_output["last_hidden_state"], hf, atol=1e-5)


@pytest.mark.parametrize("n,window,stride", [(5, 8, 6), (8, 8, 6), (9, 8, 6), (50, 8, 6), (100, 16, 12), (37, 10, 10), (20, 4, 1)])
def test_windows_plan_covers_and_centres(n, window, stride):
    plan = plan_windows(n, window, stride)
    assert all(plan.end(i, n) - plan.starts[i] <= window for i in range(plan.n_windows))
    assert plan.starts[0] == 0 and plan.end(plan.n_windows - 1, n) == n
    for j in range(n):
        w = plan.owner[j]
        assert plan.starts[w] <= j < plan.end(w, n)
        margin = min(j - plan.starts[w], plan.end(w, n) - 1 - j)
        for other in range(plan.n_windows):  # no other window holds j more centrally
            if plan.starts[other] <= j < plan.end(other, n):
                assert min(j - plan.starts[other], plan.end(other, n) - 1 - j) <= margin


def test_windows_invalid_settings_error():
    with pytest.raises(BertflowError, match="stride <= window"):
        plan_windows(10, 4, 8)


def test_encoder_long_doc_windows(make_nlp, tiny_bert_dir):
    window, stride = 16, 12
    nlp = make_nlp(window=window, stride=stride)
    words = "the cat sat on the mat and the dog ran fast in london".split()
    text = " ".join(words[i % len(words)] for i in range(3 * window))
    doc = nlp(text)
    info = doc._.trf_windows
    assert info["n_wordpieces"] == len(doc) == 3 * window
    assert info["n_windows"] >= 3 and not info["truncated"]
    data = doc._.trf_data
    assert data.model_output["last_hidden_state"].shape[0] == info["n_windows"]
    vectors = token_vectors(doc)
    assert vectors.shape == (len(doc), 32) and numpy.isfinite(vectors).all()
    assert (numpy.abs(vectors).sum(axis=1) > 0).all()
    # A token far from its window's edges equals the forward of that window alone.
    rows = data.wordpieces.input_ids
    plan = plan_windows(info["n_wordpieces"], window, stride)
    checked = 0
    for tok in doc:
        w = plan.owner[tok.i]
        start, end = plan.starts[w], plan.end(w, info["n_wordpieces"])
        if min(tok.i - start, end - 1 - tok.i) < 3:
            continue
        alone = hf_forward(tiny_bert_dir, [rows[w][: data.wordpieces.lengths[w]]])[0]
        numpy.testing.assert_allclose(vectors[tok.i], alone[1 + tok.i - start], atol=1e-5)
        checked += 1
    assert checked >= 3 * (window - stride) // 2


@pytest.mark.parametrize("text", [
    "日本語" * 3000,                          # one spaCy token, 9,000 wordpieces
    "aGVsbG8+d29ybGQ/" * 700 + " end",       # base64, no spaces (+ and / split it)
    "http://example.com/" + "a/b-c_d.e" * 900,
])
def test_encoder_huge_single_token(make_nlp, text):
    nlp = make_nlp(window=64, stride=48, max_length=128)
    doc = nlp(text)
    data = doc._.trf_data
    assert data.wordpieces.input_ids.shape[1] <= 128
    assert all(length <= 128 for length in data.wordpieces.lengths)
    vectors = token_vectors(doc)
    assert vectors.shape[0] == len(doc) and numpy.isfinite(vectors).all()
    assert doc._.trf_windows["n_windows"] > 1 and doc._.trf_windows["truncated"] is False


def test_encoder_pair_truncation_is_recorded(make_nlp):
    nlp = make_nlp(max_length=32, max_pair_length=8)
    doc = nlp.make_doc("the cat sat on the mat.")
    doc._.text_pair = " ".join(["who"] * 40)
    with pytest.warns(UserWarning, match="was cut to 8 wordpieces"):
        doc = nlp(doc)
    assert doc._.trf_windows["pair_truncated"] is True and doc._.trf_windows["truncated"] is True
    assert doc._.trf_windows["pair_wordpieces"] == 8
    assert all(length <= 32 for length in doc._.trf_data.wordpieces.lengths)


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200b", "hello \u200b world", "\x00\x01 cat", "👩‍👩‍👧 🙂"])
def test_encoder_odd_texts(make_nlp, text):
    nlp = make_nlp()
    doc = nlp(text)
    if len(doc) == 0:
        assert doc._.trf_data.model_output.get("last_hidden_state") is None
        return
    vectors = token_vectors(doc)
    assert vectors.shape[0] == len(doc) and numpy.isfinite(vectors).all()


def test_encoder_batch_order_invariance(make_nlp):
    nlp = make_nlp(window=16, stride=12)
    texts = ["the cat sat", "john ran to the big red city of new york with mary and the dog " * 3,
             "", "hello world", "a", "paris is in france and london is not " * 2]
    forward = {t: token_vectors(d) if len(d) else None for t, d in zip(texts, nlp.pipe(texts, batch_size=64))}
    shuffled = texts[:]
    random.Random(1).shuffle(shuffled)
    for text, doc in zip(shuffled, nlp.pipe(shuffled, batch_size=3)):
        if forward[text] is None:
            assert len(doc) == 0
        else:
            numpy.testing.assert_allclose(token_vectors(doc), forward[text], atol=1e-5)
    one_by_one = [nlp(t) for t in texts]
    for text, doc in zip(texts, one_by_one):
        if len(doc):
            numpy.testing.assert_allclose(token_vectors(doc), forward[text], atol=1e-5)


@given(lengths=st.lists(st.integers(0, 300), max_size=60), max_docs=st.integers(1, 16),
       max_items=st.integers(1, 2000))
def test_length_sorted_batches_cover_every_index_within_bounds(lengths, max_docs, max_items):
    from bertflow.encoder.batch import length_sorted_batches

    batches = length_sorted_batches(lengths, max_docs, max_items)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= max_docs and (len(batch) == 1 or longest * len(batch) <= max_items)
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_encoder_sort_buffer_keeps_input_order_and_outputs(make_nlp):
    """With a sort buffer far larger than the batch, docs still come out in input order,
    encoded as they are without it."""
    texts = [("the cat sat on the mat " * (i % 7 + 1)).strip() for i in range(50)] + ["", "a"]
    buffered = make_nlp(window=16, stride=12)
    buffered.get_pipe("encoder").cfg["sort_buffer"] = 1024
    plain = make_nlp(window=16, stride=12)
    plain.get_pipe("encoder").cfg["sort_buffer"] = 0
    docs = list(buffered.pipe(texts, batch_size=4))
    assert [d.text for d in docs] == texts
    for doc, ref in zip(docs, plain.pipe(texts, batch_size=4)):
        if len(doc):
            numpy.testing.assert_allclose(token_vectors(doc), token_vectors(ref), atol=1e-5)


def test_encoder_pipe_tokenizes_each_doc_once(make_nlp, monkeypatch):
    """The length sort and the pass share one tokenization, with the same
    outputs as tokenizing per batch."""
    import bertflow.encoder.model as encoder_model

    texts = [("the cat sat on the mat " * (i % 5 + 1)).strip() for i in range(20)] + ["", "a"]
    nlp = make_nlp(window=16, stride=12)
    expected = [token_vectors(nlp(t)) if t else None for t in texts]
    seen = []
    tokenize = encoder_model.tokenize_docs

    def spy(tokenizer, docs, **kwargs):
        seen.extend(doc.text for doc in docs if len(doc))
        return tokenize(tokenizer, docs, **kwargs)

    monkeypatch.setattr(encoder_model, "tokenize_docs", spy)
    docs = list(nlp.pipe(texts, batch_size=4))
    assert sorted(seen) == sorted(t for t in texts if t)
    for doc, ref in zip(docs, expected):
        if ref is not None:
            numpy.testing.assert_allclose(token_vectors(doc), ref, atol=1e-5)


def test_encoder_pipe_hands_a_bad_pair_to_the_error_handler(make_nlp):
    """A doc whose text_pair is not a string fails its own batch, inside the
    pipe's error handling: the default raises, an ignoring handler drops it."""
    nlp = make_nlp()
    docs = [nlp.make_doc(t) for t in ("the cat", "a dog", "the mat")]
    docs[1]._.text_pair = 42
    with pytest.raises(BertflowError, match="text_pair must be a str or None, got int"):
        list(nlp.pipe(docs, batch_size=1))
    nlp.set_error_handler(lambda name, component, batch, err: None)
    docs = [nlp.make_doc(t) for t in ("the cat", "a dog", "the mat")]
    docs[1]._.text_pair = 42
    assert [d.text for d in nlp.pipe(docs, batch_size=1)] == ["the cat", "the mat"]


def test_wordpiece_strings_cover_tokens_added_to_the_vocabulary(tiny_bert_dir):
    """Row strings come from a cached base vocabulary; an id added later is looked up itself."""
    import spacy
    from bertflow.encoder.windows import strided_windows
    from bertflow.encoder.layout import layout_docs
    from bertflow.encoder.tokenize import tokenize_docs

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    tokenizer.add_tokens(["brandnewtoken"])
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("the brandnewtoken cat"), nlp.make_doc("the cat")]
    ids = [tokenizer(d.text)["input_ids"] for d in docs]
    assert max(ids[0]) >= tokenizer.vocab_size
    batch, _, _, _ = layout_docs(tokenizer, docs, tokenize_docs(tokenizer, docs), max_length=32, max_pair_length=14,
                                 get_windows=strided_windows(window=30, stride=30))
    assert batch.strings == [tokenizer.convert_ids_to_tokens(i) for i in ids]
    assert "brandnewtoken" in batch.strings[0]


def test_encoder_pads_only_to_longest_row(make_nlp):
    nlp = make_nlp()
    enc = nlp.get_pipe("encoder")
    docs = [nlp.make_doc(t) for t in ("the cat", "the cat sat on the mat")]
    batch = enc.predict(docs)
    assert batch.wordpieces.input_ids.shape == (2, 8)  # [CLS] + 6 + [SEP]
    assert batch.wordpieces.lengths == [4, 8]
    tokenizer = enc.model.tokenizer
    assert batch.wordpieces.strings == [tokenizer.convert_ids_to_tokens(tokenizer("the cat")["input_ids"]),
                                        tokenizer.convert_ids_to_tokens(tokenizer("the cat sat on the mat")["input_ids"])]


def test_encoder_keep_layers_outputs_hidden_states(make_nlp):
    nlp = make_nlp(keep_layers=3)
    doc = nlp("the cat sat")
    hidden = doc._.trf_data.model_output["hidden_states"]
    assert len(hidden) == 3
    numpy.testing.assert_allclose(hidden[-1], doc._.trf_data.model_output["last_hidden_state"], atol=1e-6)


def test_encoder_int8_precision_runs_close_to_fp32(make_nlp):
    text = "the cat sat on the mat in paris"
    fp32 = token_vectors(make_nlp()(text))
    int8 = token_vectors(make_nlp(precision="int8")(text))
    assert int8.shape == fp32.shape
    cos = (int8 * fp32).sum(1) / numpy.linalg.norm(int8, axis=1) / numpy.linalg.norm(fp32, axis=1)
    assert cos.min() > 0.95
    assert not numpy.allclose(int8, fp32, atol=1e-7)  # it really ran quantised


@pytest.mark.parametrize("native", [True, False])
def test_encoder_bf16_runs_on_a_cpu_with_native_bf16_and_warns_elsewhere(make_nlp, monkeypatch, native):
    import warnings

    import bertflow.encoder.precision as encoder_model
    from bertflow.errors import PrecisionWarning

    monkeypatch.setattr(encoder_model, "cpu_has_native_bf16", lambda: native)
    text = "the cat sat on the mat in paris"
    fp32 = token_vectors(make_nlp()(text))
    nlp = make_nlp(precision="bf16")
    if native:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrecisionWarning)
            vectors = token_vectors(nlp(text))
        cos = (vectors * fp32).sum(1) / numpy.linalg.norm(vectors, axis=1) / numpy.linalg.norm(fp32, axis=1)
        assert cos.min() > 0.98 and vectors.dtype == numpy.float32
        assert not numpy.allclose(vectors, fp32, atol=1e-6)  # it really ran in bf16
    else:
        with pytest.warns(PrecisionWarning, match="a GPU or a CPU with native bf16"):
            vectors = token_vectors(nlp(text))
        numpy.testing.assert_allclose(vectors, fp32, atol=1e-6)


def test_int8_packing_leaves_the_process_quantized_engine_alone():
    """quantize_int8 packs for oneDNN by switching torch's process-wide engine;
    it must put the user's setting back, even when packing fails."""
    from bertflow.encoder.precision import quantize_int8

    engines = torch.backends.quantized.supported_engines
    before = torch.backends.quantized.engine
    other = next(e for e in ("fbgemm", "x86", "qnnpack") if e in engines and e != "onednn")
    torch.backends.quantized.engine = other
    try:
        layer = torch.nn.Sequential(torch.nn.Linear(8, 4))
        quantized = quantize_int8(layer)
        assert torch.backends.quantized.engine == other
        assert type(quantized[0]).__name__ == "Linear" and quantized[0].__module__.startswith("torch.ao.nn.quantized")
        x = torch.randn(3, 8)
        torch.testing.assert_close(quantized(x), layer(x), atol=0.05, rtol=0.05)
        with pytest.raises(AttributeError):  # not a torch module
            quantize_int8(object())
        assert torch.backends.quantized.engine == other
    finally:
        torch.backends.quantized.engine = before


def test_encoder_gpu_only_precision_warns_on_cpu(make_nlp):
    from bertflow.errors import PrecisionWarning

    import warnings

    nlp = make_nlp(precision="fp16")
    with pytest.warns(PrecisionWarning, match="applies only on a GPU"):
        doc = nlp("the cat")
    assert doc._.trf_data.model_output["last_hidden_state"].dtype == numpy.float32
    with warnings.catch_warnings():  # once per model, not once per batch
        warnings.simplefilter("error", PrecisionWarning)
        nlp("the dog")


@pytest.mark.parametrize("native_bf16", [False, True])
def test_mixed_precision_training_on_cpu(make_nlp, caplog, monkeypatch, native_bf16):
    """mixed_precision = true on a CPU: bf16 autocast for the training pass where
    the CPU multiplies bf16 natively, else fp32 with an info line,
    not a PrecisionWarning per run. Either way the heads get fp32
    outputs and the trainable weights fp32 gradients."""
    import logging
    import warnings

    import torch
    from spacy.training import Example

    from bertflow.errors import PrecisionWarning
    from bertflow.encoder import precision as layers

    monkeypatch.setattr(layers, "cpu_has_native_bf16", lambda: native_bf16)
    nlp = make_nlp(mixed_precision=True, heads=("test_token_probe",))
    egs = [Example.from_dict(nlp.make_doc("the cat sat"), {})]
    nlp.initialize(lambda: egs)
    encoder = nlp.get_pipe("encoder").model
    seen = []
    linear = next(m for m in encoder.transformer.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="bertflow"):
        warnings.simplefilter("error", PrecisionWarning)
        nlp.update(egs)
        nlp.update(egs)  # the second pass keeps the setting
    assert seen == [torch.bfloat16 if native_bf16 else torch.float32] * 2
    assert "mixed_precision" in caplog.text and ("bf16 autocast" if native_bf16 else "fp32") in caplog.text
    grads = [p.grad for p in encoder.transformer.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    doc = nlp("the cat sat")  # inference stays at the configured precision (fp32)
    assert doc._.trf_data.model_output["last_hidden_state"].dtype == numpy.float32
    assert seen[-1] == torch.float32


def test_encoder_unknown_precision_error(make_nlp):
    from bertflow.errors import BertflowError

    with pytest.raises(BertflowError, match="Unknown precision 'fp8'"):
        make_nlp(precision="fp8")


def test_encoder_text_pair_type_error(make_nlp):
    from bertflow.errors import BertflowError

    nlp = make_nlp()
    doc = nlp.make_doc("the cat")
    doc._.text_pair = 42
    with pytest.raises(BertflowError, match="text_pair must be a str or None, got int"):
        nlp(doc)


@pytest.mark.gpu
def test_encoder_gpu_fp16_matches_fp32(make_nlp):
    import spacy

    spacy.require_gpu(0)
    try:
        text = "the cat sat on the mat in paris"
        fp32 = token_vectors(make_nlp()(text))
        fp16 = token_vectors(make_nlp(precision="fp16")(text))
        fp32, fp16 = (numpy.asarray(getattr(a, "get", lambda: a)()) for a in (fp32, fp16))
        assert numpy.allclose(fp16, fp32, atol=5e-2)
    finally:
        from thinc.api import set_current_ops, NumpyOps

        set_current_ops(NumpyOps())


def test_encoder_longest_pair_still_leaves_room_for_the_doc(make_nlp):
    nlp = make_nlp(max_length=16, max_pair_length=100)
    doc = nlp.make_doc("the cat sat on the mat with the dog")
    doc._.text_pair = " ".join(["who"] * 50)
    with pytest.warns(UserWarning, match="was cut to 12 wordpieces"):
        doc = nlp(doc)
    assert all(length <= 16 for length in doc._.trf_data.wordpieces.lengths)
    assert token_vectors(doc).shape[0] == len(doc)
    assert doc._.trf_windows["n_windows"] == doc._.trf_windows["n_wordpieces"]  # one doc wordpiece per row


def test_int8_exclude_keeps_the_named_layers_out_of_int8(make_nlp):
    """A layer named in int8_exclude (by suffix) runs in bf16 on a CPU with native
    bf16 matmuls and in fp32 elsewhere; every other Linear layer is int8."""
    from bertflow.encoder.precision import Bf16Linear, cpu_has_native_bf16, ffn_up_projections, quantize_int8

    nlp = make_nlp(precision="int8", int8_exclude=["intermediate.dense"])
    text = "the cat sat on the mat in paris"
    doc = nlp(text)
    model = nlp.get_pipe("encoder").model
    transformer = model.transformer
    assert ffn_up_projections(transformer) == ["intermediate.dense"]
    quantized = model.attrs["int8_model"]
    kept_type = Bf16Linear if cpu_has_native_bf16() else torch.nn.Linear
    n_layers = transformer.config.num_hidden_layers
    kinds = {name: type(m) for name, m in quantized.named_modules() if name.endswith(("dense", "fused"))}
    assert [n for n, t in kinds.items() if t is kept_type] == [f"encoder.layer.{i}.intermediate.dense"
                                                               for i in range(n_layers)]
    assert all(t.__module__.startswith("torch.ao.nn.quantized") for n, t in kinds.items() if "intermediate" not in n)
    fp32 = token_vectors(make_nlp()(text))
    mixed = token_vectors(doc)
    cos = (mixed * fp32).sum(1) / numpy.linalg.norm(mixed, axis=1) / numpy.linalg.norm(fp32, axis=1)
    assert cos.min() > 0.95
    # a full module name works too, and the fp32 transformer itself is never changed
    one = quantize_int8(transformer, ["encoder.layer.0.intermediate.dense"])
    assert type(one.encoder.layer[0].intermediate.dense) is kept_type
    assert type(one.encoder.layer[1].intermediate.dense) is not kept_type
    assert type(transformer.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    # a name within the layer is matched whole: "output.dense" is the FFN down-projection only
    down = quantize_int8(transformer, ["output.dense"])
    assert type(down.encoder.layer[0].output.dense) is kept_type
    assert type(down.encoder.layer[0].attention.output.dense).__module__.startswith("torch.ao.nn.quantized")


def test_int8_exclude_with_a_name_that_matches_nothing_says_what_exists(make_nlp):
    nlp = make_nlp(precision="int8", int8_exclude=["intermediat.dense"])
    with pytest.raises(BertflowError, match=r"'intermediat\.dense'.*intermediate\.dense"):
        nlp("a text")


def test_inference_runs_in_eval_mode_and_gives_each_module_its_mode_back(make_nlp):
    """A transformer left in training mode (e.g. between updates) predicts without
    dropout, and is in training mode again afterwards, module by module."""
    nlp = make_nlp()
    nlp.initialize()
    transformer = nlp.get_pipe("encoder").model.transformer
    transformer.train()
    transformer.embeddings.eval()  # a mixed state must come back as it was
    text = "the cat sat on the mat in paris"
    first, second = token_vectors(nlp(text)), token_vectors(nlp(text))
    numpy.testing.assert_array_equal(first, second)
    assert transformer.training and transformer.encoder.layer[0].attention.self.dropout.training
    assert not transformer.embeddings.training and not transformer.embeddings.dropout.training


def test_int8_runs_query_key_and_value_as_one_gemm_with_the_same_numbers(make_nlp):
    """fuse_qkv: one Linear over the stacked weights, registered once per layer;
    fp32 outputs are those of the three layers, and int8 ones those of three
    separately quantised layers (they share the input's scale anyway)."""
    from bertflow.encoder.precision import ProjectionPart, fuse_qkv, quantize_int8

    nlp = make_nlp()
    nlp.initialize()
    transformer = nlp.get_pipe("encoder").model.transformer
    n_layers = transformer.config.num_hidden_layers
    fused = copy.deepcopy(transformer)
    assert fuse_qkv(fused) == n_layers
    attention = fused.encoder.layer[0].attention.self
    assert all(type(getattr(attention, n)) is ProjectionPart for n in ("query", "key", "value"))
    assert sum(k.endswith("projection.fused.weight") for k in fused.state_dict()) == n_layers
    assert not any(k.endswith(("query.weight", "key.weight", "value.weight")) for k in fused.state_dict())
    batch = nlp.get_pipe("encoder").model.tokenizer(["the cat sat on the mat", "paris"], padding=True,
                                                      return_tensors="pt")
    with torch.inference_mode():
        want = transformer(**batch).last_hidden_state
        torch.testing.assert_close(fused(**batch).last_hidden_state, want, atol=1e-5, rtol=1e-5)
        plain = copy.deepcopy(transformer)
        spec = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        before = torch.backends.quantized.engine
        torch.backends.quantized.engine = "onednn" if "onednn" in torch.backends.quantized.supported_engines else before
        try:
            separate = torch.ao.quantization.quantize_dynamic(plain, spec, dtype=torch.qint8)
        finally:
            torch.backends.quantized.engine = before
        torch.testing.assert_close(quantize_int8(transformer)(**batch).last_hidden_state,
                                   separate(**batch).last_hidden_state, atol=1e-4, rtol=1e-4)
    # nothing is held between passes once every part has its slice
    assert all(m._last is None for m in fused.modules() if hasattr(m, "sizes"))
    # a layer kept out of int8 is not fused into the others
    partly = quantize_int8(transformer, ["encoder.layer.0.attention.self.query"])
    assert type(partly.encoder.layer[0].attention.self.key) is not ProjectionPart
    assert type(partly.encoder.layer[1].attention.self.key) is ProjectionPart


def test_length_buckets_split_only_where_lengths_differ_more_than_twofold():
    from bertflow.encoder.lengths import length_buckets
    lengths = [200, 20, 22, 180, 25, 21, 19, 30, 210, 24]
    groups = length_buckets(lengths, min_rows=2)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [sorted(lengths[i] for i in g) for g in groups] == [[19, 20, 21, 22, 24, 25, 30], [180, 200, 210]]
    assert len(length_buckets([5, 100, 6], min_rows=4)) == 1  # too few rows to be worth a call each


@pytest.mark.parametrize("keep_layers", [1, 2])
def test_training_pass_in_length_buckets_matches_one_padded_call(make_nlp, monkeypatch, keep_layers):
    """A batch of short sentences and long contexts is run in two buckets; the
    outputs (padded to the batch's longest row, in row order) and the
    transformer's parameter gradients equal those of one padded call."""
    import bertflow.encoder.hf_calls as encoder_model
    nlp = make_nlp(keep_layers=keep_layers)
    nlp.initialize()
    model = nlp.get_pipe("encoder").model
    long = " ".join(["the cat sat on the mat and looked at the dog"] * 4)
    docs = [nlp.make_doc(t) for t in ["a cat", long, "the dog ran", "a mat", long + " again", "dogs", "one cat", "hi"]]

    def run(bucketed: bool):
        if not bucketed:
            monkeypatch.setattr(encoder_model, "length_buckets", lambda lengths, **_: [list(range(len(lengths)))])
        else:
            monkeypatch.undo()
        calls = []
        inner = model.layers[0]
        original = inner._func

        def counting(m, X, is_train):
            calls.append(X[0].input_ids.shape)
            return original(m, X, is_train)
        monkeypatch.setattr(inner, "_func", counting)
        model.transformer.zero_grad()
        for m in model.transformer.modules():  # no dropout: the two runs must see the same function
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
            if hasattr(m, "dropout_prob"):
                m.dropout_prob = 0.0
        batch, backprop = model.begin_update(docs)
        hidden = batch.model_output["last_hidden_state"].detach().clone()
        # gradients only where a row has wordpieces, as the heads give them
        real = torch.as_tensor(batch.wordpieces.attention_mask)[:, :, None]
        grads = ModelOutput(last_hidden_state=real.expand_as(hidden).clone())
        if keep_layers > 1:
            grads["hidden_states"] = tuple(real.expand_as(h).clone() for h in batch.model_output["hidden_states"])
        backprop(grads)
        monkeypatch.setattr(inner, "_func", original)
        return calls, hidden, batch.wordpieces.lengths, [p.grad.clone() for p in model.transformer.parameters() if p.grad is not None]

    one_calls, one_hidden, lengths, one_grads = run(False)
    two_calls, two_hidden, _, two_grads = run(True)
    assert len(one_calls) == 1 and len(two_calls) == 2
    assert sum(s[0] * s[1] for s in two_calls) < one_calls[0][0] * one_calls[0][1] / 2
    for r, n in enumerate(lengths):
        torch.testing.assert_close(two_hidden[r, :n], one_hidden[r, :n], atol=2e-5, rtol=1e-4)
    assert len(one_grads) == len(two_grads)
    for a, b in zip(two_grads, one_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_inference_in_length_buckets_matches_one_padded_call(make_nlp, monkeypatch):
    """Inference over a batch of mixed lengths (a server's batch of whatever came
    in together) with an encoder that can't run padding-free runs in tighter
    buckets than training, and each doc's output equals that of one padded call."""
    import bertflow.encoder.hf_calls as hf_calls

    monkeypatch.setattr(hf_calls, "packable", lambda module: False)
    nlp = make_nlp(keep_layers=2)
    nlp.initialize()
    texts = ["a cat", " ".join(["the dog ran"] * 6), "the dog", "hi", " ".join(["a mat"] * 9), "one",
             " ".join(["the cat sat"] * 6), " ".join(["the mat"] * 9)]
    shapes = []
    original = hf_calls._inference_call

    def counting(model, wordpieces, *args):
        shapes.append(wordpieces.input_ids.shape)
        return original(model, wordpieces, *args)

    monkeypatch.setattr(hf_calls, "_inference_call", counting)
    def real_rows(docs):  # each doc's hidden states at its own wordpieces (not at the batch's padding)
        return [numpy.asarray(d._.trf_data.model_output["last_hidden_state"])[:, :d._.trf_data.wordpieces.lengths[0]].copy()
                for d in docs]

    bucketed = real_rows(nlp.pipe(texts, batch_size=8))
    assert len(shapes) >= 2  # the short texts are not padded to the long ones
    assert sum(r * w for r, w in shapes) < 8 * max(w for _, w in shapes) * 2 / 3
    shapes.clear()
    monkeypatch.setattr(hf_calls, "bucket_plan", lambda wordpieces, **_: None)
    single = real_rows(nlp.pipe(texts, batch_size=8))
    assert len(shapes) == 1
    for a, b in zip(bucketed, single):
        numpy.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", [True, False])
def test_set_doc_values_is_doc_underscore(layout, monkeypatch):
    """``set_doc_values`` / ``get_doc_value`` read and write exactly what
    ``doc._.<name>`` does (spaCy's own storage, or plain assignment where
    spaCy keeps extension values elsewhere); an unknown extension is an error
    that says how to make it."""
    import spacy

    from bertflow.encoder import extensions

    monkeypatch.setattr(extensions, "_LAYOUT", [layout])
    nlp = spacy.blank("en")
    docs = [nlp("one doc"), nlp("another doc")]
    extensions.set_doc_values(docs, "trf_windows", [{"n_windows": 1}, None])
    assert docs[0]._.trf_windows == {"n_windows": 1} and docs[1]._.trf_windows is None
    docs[1]._.trf_windows = {"n_windows": 2}
    assert [extensions.get_doc_value(d, "trf_windows") for d in docs] == [{"n_windows": 1}, {"n_windows": 2}]
    assert extensions.get_doc_value(nlp("fresh"), "trf_windows") is None
    copy = docs[0].copy()
    assert copy._.trf_windows == {"n_windows": 1}
    with pytest.raises(AttributeError, match="set_extension"):
        extensions.set_doc_values(docs, "no_such_extension", [1, 2])
