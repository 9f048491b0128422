import json

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Adam

import bertflow
from bertflow.api import BertflowError, tiny_encoder_config
from bertflow_similarity.convert import convert
from bertflow_similarity.retrieval import score_pairs, search

TEXTS = ["the cat sat on the mat", "a dog ran fast", "john loves paris", "mary ran to london", "a big red apple"]


def make_nlp(tiny_bert_dir, *heads, **head_cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    for head in heads:
        nlp.add_pipe(head, config=head_cfg.get(head, {}))
    return nlp


@pytest.fixture
def bi_nlp(tiny_bert_dir):
    nlp = make_nlp(tiny_bert_dir, "bertflow_similarity")
    nlp.initialize()
    return nlp


def test_doc_and_span_similarity_use_the_bi_encoder(bi_nlp):
    a, b, c = bi_nlp("the cat sat on the mat"), bi_nlp("the cat sat on the mat"), bi_nlp("a dog ran fast")
    assert numpy.allclose(a.vector, a._.sim_vector) and a.has_vector
    assert numpy.linalg.norm(a.vector) == pytest.approx(1.0, abs=1e-5)
    assert a.similarity(b) == pytest.approx(1.0, abs=1e-5)
    assert a.similarity(c) < 0.9999 and a.similarity(c) == pytest.approx(float(a._.sim_vector @ c._.sim_vector))
    span = a[1:3]
    assert span.vector.shape == a.vector.shape and numpy.linalg.norm(span.vector) == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= span.similarity(c) <= 1.0 and -1.0 <= a.similarity(span) <= 1.0


def test_embedding_is_the_mean_over_all_positions(bi_nlp):
    doc = bi_nlp("john loves paris")
    hidden = doc._.trf_data.model_output["last_hidden_state"][0]
    n = doc._.trf_data.wordpieces.lengths[0]
    expected = hidden[:n].mean(axis=0)
    assert numpy.allclose(doc._.sim_vector, expected / numpy.linalg.norm(expected), atol=1e-6)


def test_hooks_survive_serialization(bi_nlp, tmp_path):
    bi_nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    x, y = loaded("a dog ran fast"), bi_nlp("a dog ran fast")
    assert numpy.allclose(x.vector, y.vector, atol=1e-6)
    assert x.similarity(loaded("a dog ran fast")) == pytest.approx(1.0, abs=1e-5)


def test_search_finds_the_planted_neighbour(bi_nlp):
    documents = [f"{w} {v} city" for w in ("red", "blue", "green", "big", "small") for v in ("apple", "dog", "cat")]
    queries = ["green dog city", "small apple city", "blue cat city"]
    results = search(bi_nlp, queries, documents, top_k=3, block=2)
    assert len(results) == 3
    for query, hits in zip(queries, results):
        assert hits[0]["text"] == query and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert bertflow.search is search  # through the bertflow_functions hook
    assert search(bi_nlp, ["x"], [], top_k=2) == [[]]
    with pytest.raises(BertflowError, match="top_k"):
        search(bi_nlp, ["x"], ["y"], top_k=0)


def test_search_without_the_head_says_what_to_add(nlp_tiny):
    with pytest.raises(BertflowError, match="no bertflow_similarity component"):
        search(nlp_tiny, ["a"], ["b"])


def pair_examples(nlp, pairs):
    egs = []
    for i, (a, b, score) in enumerate(pairs):
        for text in (a, b):
            ref = nlp.make_doc(text)
            ref._.sim_group, ref._.sim_score = f"p{i}", score
            egs.append(Example(nlp.make_doc(text), ref))
    return egs


def test_bi_encoder_fine_tunes_on_pairs(tiny_bert_dir):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert_dir, "bertflow_similarity")
    pairs = [("good movie", "great film", 5.0), ("good movie", "terrible dog", 0.0),
             ("bad film", "terrible movie", 5.0), ("bad film", "great apple", 0.0)]
    egs = pair_examples(nlp, pairs)
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-3)
    losses = [nlp.update(egs, sgd=optimizer)["bertflow_similarity"] for _ in range(40)]
    assert losses[-1] < losses[0] * 0.3
    assert nlp("good movie").similarity(nlp("great film")) > nlp("good movie").similarity(nlp("terrible dog"))
    scores = nlp.evaluate(egs)
    assert scores["sim_spearman"] > 0.5


@pytest.mark.slow
def test_cross_encoder_learns_a_pair_regression(tiny_bert_dir):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert_dir, "bertflow_pair_classifier", bertflow_pair_classifier={"model": {"dropout": 0.0}})
    pairs = [("good movie", "great film", 4.5), ("good movie", "terrible dog", 0.5),
             ("bad film", "terrible movie", 4.5), ("bad film", "great apple", 0.5)]
    egs = []
    for a, b, score in pairs:
        pred, ref = nlp.make_doc(b), nlp.make_doc(b)
        pred._.text_pair = ref._.text_pair = a
        ref._.sim_score = score
        egs.append(Example(pred, ref))
    nlp.initialize(lambda: egs)
    optimizer = Adam(3e-3)
    losses = [nlp.update(egs, sgd=optimizer)["bertflow_pair_classifier"] for _ in range(150)]
    assert losses[-1] < losses[0] * 0.7
    predicted = score_pairs(nlp, [(a, b) for a, b, _ in pairs])
    for (a, b, gold), got in zip(pairs, predicted):
        assert 0.0 <= got <= 5.0 and abs(got - gold) < 1.5, (a, b, got)
    assert bertflow.score_pairs is score_pairs
    assert nlp.evaluate(egs)["pair_spearman"] > 0.5


@pytest.mark.slow
def test_cross_encoder_classification_mode(tiny_bert_dir):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert_dir, "bertflow_pair_classifier",
                   bertflow_pair_classifier={"model": {"mode": "classification", "dropout": 0.0}})
    data = [("good movie", "great film", "SAME"), ("good movie", "terrible dog", "DIFF"),
            ("bad film", "terrible movie", "SAME"), ("bad film", "great apple", "DIFF")]
    egs = []
    for a, b, label in data:
        pred, ref = nlp.make_doc(b), nlp.make_doc(b)
        pred._.text_pair = ref._.text_pair = a
        ref.cats = {"SAME": float(label == "SAME"), "DIFF": float(label == "DIFF")}
        egs.append(Example(pred, ref))
    nlp.initialize(lambda: egs)
    optimizer = Adam(3e-3)
    for _ in range(150):
        nlp.update(egs, sgd=optimizer)
    cats = score_pairs(nlp, [(a, b) for a, b, _ in data])
    assert [max(c, key=c.get) for c in cats] == [label for _, _, label in data]
    scores = nlp.evaluate(egs)
    assert scores["pair_acc"] == 1.0 and scores["pair_macro_f"] == 1.0


def test_converter_stsb_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "sts.tsv"
    tsv.write_text("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain\tx\t2012\t1\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
                   "1\tmain\tx\t2012\t2\tnone\tnone\tA man.\tA woman.\tabc\n", encoding="utf8")
    with pytest.raises(BertflowError, match=r"sts\.tsv:3: score 'abc' is not a number"):
        convert(tsv, tmp_path / "bi.spacy")
    report = convert(tsv, tmp_path / "bi.spacy", skip_bad=True)
    assert (report.n_pairs, report.n_docs, report.n_skipped) == (1, 2, 1)
    cross = convert(tsv, tmp_path / "cross.spacy", mode="cross", skip_bad=True)
    assert (cross.n_pairs, cross.n_docs) == (1, 1)
    nlp = spacy.blank("en")
    from spacy.tokens import DocBin

    doc = next(DocBin().from_disk(tmp_path / "cross.spacy").get_docs(nlp.vocab))
    assert doc.text == "An air plane is taking off." and doc._.text_pair == "A plane is taking off." and doc._.sim_score == 5.0
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"text_a": "a", "text_b": "b", "label": "para"}) + "\n"
                     + json.dumps({"text_a": "c", "text_b": "d", "label": "not"}) + "\n", encoding="utf8")
    with pytest.raises(BertflowError, match=r"p\.jsonl:1: the bi-encoder trains on scores"):
        convert(jsonl, tmp_path / "x.spacy")
    assert convert(jsonl, tmp_path / "x.spacy", mode="cross").labels == ["not", "para"]


@pytest.mark.integration
def test_zero_shot_matches_the_sentence_transformers_math():
    """minilm-l6 is a sentence-transformers model: mean over all positions, then L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from bertflow.api import resolve_encoder

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder")
    nlp.add_pipe("bertflow_similarity")
    nlp.initialize()
    texts = ["A man with a hard hat is dancing.", "Ein Mann tanzt 日本 🙂", "x"]
    ours = numpy.stack([d.vector for d in nlp.pipe(texts)])
    path = resolve_encoder("minilm-l6")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert numpy.abs(ours - ref).max() < 1e-5


@pytest.mark.slow
def test_search_memory_is_bounded_by_the_block_not_queries_x_documents(bi_nlp, monkeypatch):
    """100k documents, 2,000 queries: scores are made one block of queries at a
    time, so peak memory stays far below the 2,000 x 100,000 matrix."""
    import importlib
    import tracemalloc

    search_module = importlib.import_module("bertflow_similarity.retrieval")

    rng = numpy.random.default_rng(0)

    def fake_embed(nlp, texts, batch_size=256):  # the embedding itself is tested above
        texts = list(texts)
        vectors = rng.standard_normal((len(texts), 16)).astype("f")
        return vectors / numpy.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(search_module, "embed", fake_embed)
    documents = [f"doc {i}" for i in range(100_000)]
    queries = [f"query {i}" for i in range(2_000)]
    tracemalloc.start()
    results = search(bi_nlp, queries, documents, top_k=3, block=32)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_matrix = len(queries) * len(documents) * 4
    assert len(results) == 2_000 and all(len(r) == 3 for r in results)
    assert peak < full_matrix / 4, (peak, full_matrix)


GUARD_PAIRS = [("good movie", "great film", 5.0), ("good movie", "terrible dog", 0.5), ("bad film", "terrible movie", 4.5),
               ("bad film", "great apple", 1.0), ("a red car", "a blue car", 3.5), ("the cat sat", "a cat sits", 4.0),
               ("john ran home", "paris is big", 0.0), ("the sun is hot", "the sun is warm", 4.2)]


def train_guarded(tiny_bert_dir, pairs, guard: bool, steps: int = 30):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert_dir, "bertflow_similarity",
                   bertflow_similarity={"zero_shot_guard": guard})
    egs = pair_examples(nlp, pairs)
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-3)
    for _ in range(steps):
        nlp.update(egs, sgd=optimizer)
    return nlp


@pytest.mark.slow
def test_zero_shot_guard_keeps_the_untrained_embedding_when_fine_tuning_hurts(tiny_bert_dir, tmp_path):
    """Fine-tuned on the dev pairs' scores turned upside down, the embedding gets
    worse than the untrained encoder's on dev; with zero_shot_guard the head
    scores exactly the untrained figure, uses the untrained vectors, and keeps
    them through to_disk / from_disk and to_bytes / from_bytes."""
    untrained = make_nlp(tiny_bert_dir, "bertflow_similarity")
    untrained.initialize()
    dev = pair_examples(untrained, GUARD_PAIRS)
    zero_shot = untrained.evaluate(dev)["sim_spearman"]
    inverted = [(a, b, 5.0 - s) for a, b, s in GUARD_PAIRS]

    plain = train_guarded(tiny_bert_dir, inverted, guard=False)
    assert plain.evaluate(pair_examples(plain, GUARD_PAIRS))["sim_spearman"] < zero_shot - 0.2

    nlp = train_guarded(tiny_bert_dir, inverted, guard=True)
    scores = nlp.evaluate(pair_examples(nlp, GUARD_PAIRS))
    assert scores["sim_spearman_fine_tuned"] < zero_shot - 0.2
    assert scores["sim_spearman"] == pytest.approx(zero_shot, abs=1e-6)
    assert nlp.get_pipe("bertflow_similarity").cfg["source"] == "zero_shot"
    text = "a new sentence about a dog"
    expected = untrained(text)._.sim_vector
    numpy.testing.assert_allclose(nlp(text)._.sim_vector, expected, atol=1e-5)

    nlp.to_disk(tmp_path / "guarded")
    assert (tmp_path / "guarded" / "bertflow_similarity" / "zero_shot_encoder").exists()
    loaded = spacy.load(tmp_path / "guarded")
    numpy.testing.assert_allclose(loaded(text)._.sim_vector, expected, atol=1e-5)
    again = loaded.evaluate(pair_examples(loaded, GUARD_PAIRS))
    assert again["sim_spearman"] == pytest.approx(zero_shot, abs=1e-6)
    assert "sim_spearman_zero_shot" not in again  # a saved head's choice is final
    head = loaded.get_pipe("bertflow_similarity")
    restored = head.__class__(loaded.vocab, head.model, head.name).from_bytes(head.to_bytes())
    assert restored.cfg["source"] == "zero_shot" and restored.zero_shot is not None


@pytest.mark.slow
def test_zero_shot_guard_keeps_fine_tuning_that_helps_and_saves_no_copy(tiny_bert_dir, tmp_path):
    untrained = make_nlp(tiny_bert_dir, "bertflow_similarity")
    untrained.initialize()
    zero_shot = untrained.evaluate(pair_examples(untrained, GUARD_PAIRS))["sim_spearman"]
    nlp = train_guarded(tiny_bert_dir, GUARD_PAIRS, guard=True)
    scores = nlp.evaluate(pair_examples(nlp, GUARD_PAIRS))
    assert scores["sim_spearman"] == scores["sim_spearman_fine_tuned"] > zero_shot
    assert nlp.get_pipe("bertflow_similarity").cfg["source"] == "fine_tuned"
    (tmp_path / "tuned" / "bertflow_similarity").mkdir(parents=True)
    (tmp_path / "tuned" / "bertflow_similarity" / "zero_shot_encoder").write_bytes(b"an earlier save's copy")
    nlp.to_disk(tmp_path / "tuned")
    assert not (tmp_path / "tuned" / "bertflow_similarity" / "zero_shot_encoder").exists()
    assert spacy.load(tmp_path / "tuned").get_pipe("bertflow_similarity").zero_shot is None


def test_zero_shot_copy_refuses_a_file_that_is_not_one(tiny_bert_dir, tmp_path):
    nlp = train_guarded(tiny_bert_dir, GUARD_PAIRS, guard=True, steps=0)
    nlp.get_pipe("bertflow_similarity").cfg["source"] = "zero_shot"  # as the guard sets it
    nlp.to_disk(tmp_path / "guarded")
    (tmp_path / "guarded" / "bertflow_similarity" / "zero_shot_encoder").write_bytes(b"\x00not msgpack")
    with pytest.raises(BertflowError, match="not a saved encoder copy"):
        spacy.load(tmp_path / "guarded")
