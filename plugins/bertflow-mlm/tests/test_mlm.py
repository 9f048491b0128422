"""The masked-LM head: masking statistics, whole-word masking (English and
jieba Chinese), parity with transformers' BertForMaskedLM, export, training,
input isolation beside other heads, and next-sentence prediction."""
import random
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

from bertflow.api import BertflowError, Tokenized, create_text_corpus_reader, tiny_encoder_config, write_tiny_bert
from bertflow_mlm.masking import Masking, Vocabulary, mask_doc
from bertflow_mlm.next_sentence import make_next_sentence_pairs

WORDS = ("the cat sat on the mat and a dog ran fast in new york city while steve jobs founded apple "
         "xylophone quizzically unbelievable [CLS] [SEP] ж").split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", dropout=0.0)


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    """A BertForMaskedLM checkpoint: pre-training head weights included."""
    return write_tiny_bert(tmp_path_factory.mktemp("tinymlm") / "bert", dropout=0.0, masked_lm=True)


@pytest.fixture(scope="module")
def tiny_zh_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tinyzh") / "bert", dropout=0.0, chinese=True)


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def tokenized(tokenizer, text):
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return Tokenized(enc["input_ids"], numpy.asarray(enc["offset_mapping"], dtype="int64").reshape(-1, 2), None)


def mlm_pipeline(model_dir, lang="en", next_sentence=False, **mlm):
    nlp = spacy.blank(lang)
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(model_dir))
    nlp.add_pipe("bertflow_mlm", name="mlm", config={"model": {"next_sentence": next_sentence}, **mlm})
    return nlp


def raw_examples(nlp, texts):
    out = []
    for text in texts:
        predicted = nlp.make_doc(text)
        reference = predicted.copy()
        reference._.raw_text = True
        out.append(Example(predicted, reference))
    return out


@pytest.mark.parametrize("whole_word", [False, True])
def test_masking_statistics_over_100k_wordpieces(tiny_dir, whole_word):
    tokenizer = tokenizer_of(tiny_dir)
    vocab = Vocabulary(tokenizer)
    nlp = spacy.blank("en")
    rng = numpy.random.default_rng(0)
    text_rng = random.Random(0)
    masking = Masking(whole_word=whole_word)
    counts = {"selectable": 0, "selected": 0, "mask": 0, "random": 0, "kept": 0}
    while counts["selectable"] < 100_000:
        text = " ".join(text_rng.choice(WORDS) for _ in range(40))
        doc = nlp.make_doc(text)
        tok = tokenized(tokenizer, text)
        c = mask_doc(doc, tok, masking, vocab, rng)
        ids = numpy.asarray(tok.ids)
        special = numpy.isin(ids, vocab.special)
        assert not special[c.doc_index].any(), "a special wordpiece ([CLS], [SEP], [UNK]...) was selected"
        assert (numpy.asarray(c.tokenized.ids)[special] == ids[special]).all()
        new = numpy.asarray(c.tokenized.ids)[c.doc_index]
        assert (ids[c.doc_index] == c.doc_labels).all()
        counts["selectable"] += int((~special).sum())
        counts["selected"] += len(c.doc_index)
        counts["mask"] += int((new == vocab.mask_id).sum())
        counts["kept"] += int((new == c.doc_labels).sum())
        counts["random"] += int(((new != vocab.mask_id) & (new != c.doc_labels)).sum())
        unselected = numpy.setdiff1d(numpy.arange(len(ids)), c.doc_index)
        assert (numpy.asarray(c.tokenized.ids)[unselected] == ids[unselected]).all()
    assert abs(counts["selected"] / counts["selectable"] - 0.15) < 0.01
    assert abs(counts["mask"] / counts["selected"] - 0.8) < 0.01
    # a random draw can hit the original wordpiece (1 in ~200 in the tiny vocabulary): counted as kept
    assert abs(counts["random"] / counts["selected"] - 0.1) < 0.01
    assert abs(counts["kept"] / counts["selected"] - 0.1) < 0.01


def test_masking_is_seeded_and_configurable(tiny_dir):
    tokenizer = tokenizer_of(tiny_dir)
    vocab = Vocabulary(tokenizer)
    doc = spacy.blank("en").make_doc("the cat sat on the mat " * 20)
    tok = tokenized(tokenizer, doc.text)
    a = mask_doc(doc, tok, Masking(), vocab, numpy.random.default_rng(5))
    b = mask_doc(doc, tok, Masking(), vocab, numpy.random.default_rng(5))
    assert a.tokenized.ids == b.tokenized.ids and (a.doc_index == b.doc_index).all()
    everything = mask_doc(doc, tok, Masking(probability=1.0, mask_rate=1.0, random_rate=0.0), vocab,
                          numpy.random.default_rng(0))
    assert set(everything.tokenized.ids) == {vocab.mask_id}
    with pytest.raises(BertflowError, match="sum"):
        Masking(mask_rate=0.9, random_rate=0.2)
    with pytest.raises(BertflowError, match="mask_probability"):
        Masking(probability=0.0)


def test_pair_wordpieces_are_masked_only_when_asked(tiny_dir):
    tokenizer = tokenizer_of(tiny_dir)
    vocab = Vocabulary(tokenizer)
    doc = spacy.blank("en").make_doc("the cat sat on the mat")
    tok = tokenized(tokenizer, doc.text)
    tok = Tokenized(tok.ids, tok.offsets, tokenizer("a dog ran fast in the city", add_special_tokens=False)["input_ids"])
    every = dict(probability=1.0, mask_rate=1.0, random_rate=0.0)
    plain = mask_doc(doc, tok, Masking(**every), vocab, numpy.random.default_rng(0))
    assert plain.tokenized.pair_ids == tok.pair_ids and len(plain.pair_index) == 0
    paired = mask_doc(doc, tok, Masking(mask_pair=True, **every), vocab, numpy.random.default_rng(0))
    assert set(paired.tokenized.pair_ids) == {vocab.mask_id} and len(paired.pair_index) == len(tok.pair_ids)


def _words_whole(doc, tok, corruption):
    from bertflow.api import wordpiece_words

    words = wordpiece_words(doc, tok)
    selected = set(corruption.doc_index.tolist())
    new = corruption.tokenized.ids
    n_split = 0
    for w in set(words.tolist()) - {-1}:
        pieces = numpy.nonzero(words == w)[0].tolist()
        chosen = [p in selected for p in pieces]
        assert all(chosen) or not any(chosen), f"word {doc[w].text!r} was split by the masking"
        if all(chosen) and len(pieces) > 1:
            n_split += 1
            assert len({new[p] == corruption.doc_labels[list(corruption.doc_index).index(p)] for p in pieces}) >= 1
    return n_split


def test_whole_word_masking_never_splits_an_english_word(tiny_dir):
    tokenizer = tokenizer_of(tiny_dir)
    vocab = Vocabulary(tokenizer)
    nlp = spacy.blank("en")
    rng = numpy.random.default_rng(1)
    multi = 0
    for i in range(300):
        text = "the xylophone quizzically sat on unbelievable mats in berlin"
        doc = nlp.make_doc(text)
        tok = tokenized(tokenizer, text)
        multi += _words_whole(doc, tok, mask_doc(doc, tok, Masking(whole_word=True), vocab, rng))
    assert multi > 20  # multi-wordpiece words were selected (whole), many times


@pytest.mark.parametrize("segmenter", ["jieba", "char"])
def test_whole_word_masking_follows_the_chinese_segmenter(tiny_zh_dir, segmenter):
    pytest.importorskip("jieba")
    tokenizer = tokenizer_of(tiny_zh_dir)
    vocab = Vocabulary(tokenizer)
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": segmenter}}})
    text = "我爱北京天安门，今天天气很好。乔布斯在加州创立了苹果公司。"
    doc = nlp.make_doc(text)
    tok = tokenized(tokenizer, text)
    assert len(tok.ids) == len(text)  # BERT's Chinese vocabulary: one wordpiece per character
    if segmenter == "jieba":
        assert any(len(t.text) > 1 for t in doc), [t.text for t in doc]
    rng = numpy.random.default_rng(0)
    multi = sum(_words_whole(doc, tok, mask_doc(doc, tok, Masking(whole_word=True), vocab, rng)) for _ in range(200))
    assert (multi > 20) == (segmenter == "jieba")  # char segmenter: every word is one character


def test_loss_equals_transformers_bert_for_masked_lm(tiny_mlm_dir):
    from transformers import BertForMaskedLM

    nlp = mlm_pipeline(tiny_mlm_dir)
    examples = raw_examples(nlp, ["the cat sat on the mat", "steve jobs founded apple in new york city",
                                  "a dog ran fast", "who founded the company in paris and london"])
    nlp.initialize(lambda: examples)
    mlm, encoder = nlp.get_pipe("mlm"), nlp.get_pipe("encoder")
    assert mlm.cfg["head_from"] == "checkpoint"
    # the decoder is the encoder's word embedding matrix itself (tied), not a copy
    assert mlm.embeddings() is encoder.transformer.get_input_embeddings().weight
    hf = BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval()
    # masks drawn as in training; the encoder's pass on the corrupted wordpieces, then the head's loss
    inputs, corrupted = encoder.training_inputs(examples, [eg.predicted for eg in examples])
    assert len(corrupted) == len(examples)
    datas, windows = encoder.outputs([eg.predicted for eg in examples], inputs.tokenized)
    for doc, win in zip([eg.predicted for eg in examples], windows):
        doc._.trf_windows = win
    from bertflow_mlm.architectures import head_scores

    X = mlm.model_input([eg.predicted for eg in examples])
    scores, _ = head_scores(mlm.model, datas, X.positions, X.embeddings, False)
    loss, _ = mlm.get_loss(examples, scores)
    # transformers on the same corrupted rows, labels -100 off target
    total, n = 0.0, 0
    for eg in examples:
        c = mlm._pending[id(eg.predicted)]
        if not len(c.doc_index):
            continue  # nothing selected in this doc: no loss from it (transformers would give nan)
        ids = [2] + c.tokenized.ids + [3]  # [CLS] ... [SEP] in the tiny vocabulary
        labels = torch.full((1, len(ids)), -100)
        labels[0, torch.as_tensor(c.doc_index) + 1] = torch.as_tensor(c.doc_labels)
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([ids]), labels=labels)
        total += float(out.loss) * len(c.doc_index)
        n += len(c.doc_index)
    assert n > 0
    assert loss == pytest.approx(total / n, abs=1e-5)


def test_export_loads_in_transformers_with_the_same_logits(tiny_mlm_dir, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    import bertflow
    from bertflow_mlm.architectures import head_scores

    nlp = mlm_pipeline(tiny_mlm_dir)
    examples = raw_examples(nlp, ["the cat sat on the mat"] * 8)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(3):  # move the weights away from the checkpoint's
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "pipeline")
    written = bertflow.export_encoder(tmp_path / "pipeline", tmp_path / "hf")
    assert written["architecture"] == "BertForMaskedLM"
    with pytest.raises(BertflowError, match="not empty"):
        bertflow.export_encoder(tmp_path / "pipeline", tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert AutoModel.from_pretrained(str(tmp_path / "hf")).config.hidden_size == 32  # the encoder alone loads too
    loaded = spacy.load(tmp_path / "pipeline")
    mlm, encoder = loaded.get_pipe("mlm"), loaded.get_pipe("encoder")
    doc = loaded.make_doc("steve jobs founded apple")
    tok = encoder.tokenize([doc])
    datas, windows = encoder.outputs([doc], tok)
    n = len(tok[0].ids)
    positions = [numpy.stack([numpy.zeros(n, dtype="int64"), 1 + numpy.arange(n)], axis=1)]
    (logits, _), _ = head_scores(mlm.model, datas, positions, mlm.embeddings(), False)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([[2] + tok[0].ids + [3]])).logits[0, 1:-1].numpy()
    numpy.testing.assert_allclose(logits, ref, atol=1e-5)


@pytest.mark.slow
def test_training_on_repeated_text_raises_masked_accuracy(tiny_dir):
    nlp = mlm_pipeline(tiny_dir, seed=3)
    examples = raw_examples(nlp, ["the cat sat on the mat", "the dog ran fast"] * 8)
    nlp.initialize(lambda: examples)
    mlm = nlp.get_pipe("mlm")
    before = mlm.score(examples)["mlm_acc"]
    optimizer = Adam(0.003)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    after = mlm.score(examples)
    assert after["mlm_acc"] > max(0.5, before + 0.3), (before, after)
    assert after["mlm_perplexity"] == pytest.approx(numpy.exp(after["mlm_loss"]))


def test_textcat_beside_mlm_sees_its_clean_input(tiny_dir):
    """A batch mixing raw text (masked LM) and labelled docs (textcat): the
    textcat docs are encoded exactly as without the masked-LM head."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_dir))
    nlp.add_pipe("bertflow_textcat", name="textcat", config={"model": {"dropout": 0.0}})
    nlp.add_pipe("bertflow_mlm", name="mlm", config={"mask_probability": 1.0})  # every wordpiece of its docs
    labelled = []
    for text, label in (("great movie", "POS"), ("terrible film", "NEG")) * 2:
        eg = Example.from_dict(nlp.make_doc(text), {"cats": {"POS": float(label == "POS"),
                                                             "NEG": float(label == "NEG")}})
        labelled.append(eg)
    raw = raw_examples(nlp, ["great movie", "the cat sat on the mat"])
    nlp.initialize(lambda: labelled + raw)
    textcat = nlp.get_pipe("textcat")
    expected = textcat.model.predict([nlp.get_pipe("encoder")(nlp.make_doc(eg.reference.text)) for eg in labelled])
    seen = {}
    original = textcat.get_loss

    def spy(examples, scores):
        seen["scores"] = textcat.model.ops.to_numpy(scores)
        return original(examples, scores)

    textcat.get_loss = spy
    batch = labelled + raw  # "great movie" is in both: masked only as the raw-text copy
    losses = {}
    nlp.update(batch, losses=losses)  # no optimizer: the weights stay as they were
    numpy.testing.assert_allclose(seen["scores"][: len(labelled)], expected, atol=1e-5)
    assert losses["mlm"] > 0


def test_two_heads_corrupting_one_doc_is_an_error(tiny_dir):
    nlp = mlm_pipeline(tiny_dir)
    nlp.add_pipe("bertflow_mlm", name="mlm2")
    examples = raw_examples(nlp, ["the cat sat on the mat"])
    nlp.initialize(lambda: examples)
    with pytest.raises(BertflowError, match="both asked the encoder to corrupt"):
        nlp.update(examples)


def test_frozen_warm_up_trains_the_head_only(tiny_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder",
                 config={**tiny_encoder_config(tiny_dir), "frozen_steps": 3})
    nlp.add_pipe("bertflow_mlm", name="mlm")
    examples = raw_examples(nlp, ["the cat sat on the mat"] * 4)
    nlp.initialize(lambda: examples)
    transformer = nlp.get_pipe("encoder").transformer
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    head_before = nlp.get_pipe("mlm").model.get_param("W").copy()
    optimizer = Adam(0.01)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert all(torch.equal(before[k], v) for k, v in transformer.state_dict().items())  # tied decoder included
    assert not numpy.allclose(head_before, nlp.get_pipe("mlm").model.get_param("W"))
    nlp.update(examples, sgd=optimizer)  # the encoder trains from here
    assert not all(torch.equal(before[k], v) for k, v in transformer.state_dict().items())


@pytest.mark.slow
def test_next_sentence_off_by_default_and_learns_a_toy_split(tiny_dir, tmp_path):
    config = spacy.blank("en")
    config.add_pipe("bertflow_encoder", config=tiny_encoder_config(tiny_dir))
    assert config.add_pipe("bertflow_mlm").model.attrs["next_sentence"] is False
    # documents of one topic each: a sentence that follows comes from the same topic, a random one mostly not
    topics = [("cat", "mat", "sat"), ("dog", "ran", "fast"), ("apple", "company", "founded"),
              ("paris", "london", "berlin"), ("movie", "film", "great"), ("red", "blue", "green")]
    rng = random.Random(0)
    lines = []
    for i in range(120):
        words = topics[i % len(topics)]
        lines.append(" ".join(" ".join(rng.choice(words) for _ in range(4)) + " ." for _ in range(4)))
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n")
    nlp = mlm_pipeline(tiny_dir, next_sentence=True, seed=0)
    reader = create_text_corpus_reader(tmp_path / "docs.txt", pairs=make_next_sentence_pairs(), seed=0)
    examples = list(reader(nlp))
    share_next = numpy.mean([eg.reference._.is_next for eg in examples])
    assert 0.35 < share_next < 0.65
    assert all(eg.predicted._.text_pair for eg in examples)
    nlp.initialize(lambda: examples)
    mlm = nlp.get_pipe("mlm")
    optimizer = Adam(0.003)
    for epoch in range(20):
        random.Random(epoch).shuffle(examples)
        for start in range(0, len(examples), 32):
            nlp.update(examples[start: start + 32], sgd=optimizer)
    assert mlm.score(examples)["nsp_acc"] > 0.8


@pytest.mark.slow
def test_pretrain_project_warms_the_head_on_the_frozen_encoder_then_exports(tmp_path, tiny_bert_dir):
    import json

    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForMaskedLM

    from bertflow.api import run_project

    project = Path(__file__).resolve().parents[3] / "projects" / "pretrain"
    work = run_project(project, tmp_path, encoder=tiny_bert_dir, head_max_steps=40, head_eval_every=2,
                       head_patience=2, max_steps=4, warmup_steps=1)
    # stage 1 leaves the encoder untouched and exports it with the head it trained
    head_dir = work / "training" / "pretrain-head" / "encoder"
    stage1 = load_file(str(head_dir / "model.safetensors"))
    original = AutoModel.from_pretrained(str(tiny_bert_dir)).state_dict()
    for name, tensor in original.items():
        key = name if name in stage1 else f"bert.{name}"
        if key in stage1:
            assert torch.equal(stage1[key], tensor), name
    assert stage1["cls.predictions.transform.dense.weight"].abs().sum() > 0
    # stage 2 starts from that head (read from the stage-1 checkpoint), not from a random one
    cfg = json.loads((work / "training" / "pretrain" / "model-best" / "mlm" / "cfg").read_text())
    assert cfg["head_from"] == "checkpoint"
    model = AutoModelForMaskedLM.from_pretrained(str(work / "encoder"))
    assert model.config.architectures == ["BertForMaskedLM"]
    metrics = json.loads((work / "metrics" / "pretrain.json").read_text())
    assert metrics["heads"]["mlm"]["mlm_targets"] > 0


def test_convert_writes_raw_text_docs(tmp_path):
    from spacy.tokens import DocBin

    from bertflow.api import run_cli

    (tmp_path / "in.txt").write_bytes("第一段 文字\n\nsecond paragraph\nstill second\n".encode("utf8"))
    result = run_cli(["convert", "mlm", tmp_path / "in.txt", tmp_path / "out.spacy", "--paragraphs"])
    assert result.code == 0, result.stderr
    assert "2 docs" in result.stdout + result.stderr
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("en").vocab))
    assert [d.text for d in docs] == ["第一段 文字", "second paragraph still second"]
    assert all(d._.raw_text for d in docs)


def test_next_sentence_pairs(tmp_path):
    nlp = spacy.blank("en")
    pairs = make_next_sentence_pairs()
    docs = [" ".join(f"Sentence {d}-{s} is here." for s in range(5)) for d in range(40)]
    (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")
    reader = create_text_corpus_reader(tmp_path / "docs.txt", pairs=pairs, seed=3)
    first = list(reader(nlp))
    assert len(first) == 40 * 4  # consecutive pairs of each document
    is_next = [eg.reference._.is_next for eg in first]
    assert 0.35 < numpy.mean(is_next) < 0.65
    for eg in first:
        a, b = eg.predicted._.text_pair, eg.predicted.text
        doc_a, s_a = a.split()[1].split("-")
        doc_b, s_b = b.split()[1].split("-")
        if eg.reference._.is_next:
            assert (doc_a, int(s_a) + 1) == (doc_b, int(s_b))
        else:
            assert doc_a != doc_b
        assert eg.reference._.text_pair == a
    again = list(create_text_corpus_reader(tmp_path / "docs.txt", pairs=pairs, seed=3)(nlp))
    assert [eg.predicted.text for eg in again] == [eg.predicted.text for eg in first]  # seeded
    second_pass = list(reader(nlp))  # the next epoch draws other pairs
    assert [eg.predicted.text for eg in second_pass] != [eg.predicted.text for eg in first]


def test_next_sentence_pairs_switched_off_read_documents(tmp_path):
    assert make_next_sentence_pairs(enabled=False) is None
