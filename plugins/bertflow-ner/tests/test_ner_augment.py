"""NER augmenters: every variant keeps its gold entities on its own text, with
the labels in order; rates and seeds are honoured; they compose with spaCy's
augmenters and train from a config."""
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from bertflow.api import BertflowError
from bertflow_ner.augment import (longer_mentions, mention_mix, mention_swap, mention_typos, pseudo_word, typo,
                                  unseen_names)

NLP = spacy.blank("en")
AUGMENTERS = [mention_swap, unseen_names, mention_typos, longer_mentions, mention_mix]
WORDS = ["Paris", "IBM", "Anna", "Smith", "went", "to", "the", "3", "U.S.", "said", "Kofi", "O'Neil", "bank"]
LABELS = ["PER", "ORG", "LOC", "MISC"]


@st.composite
def examples(draw):
    n = draw(st.integers(1, 12))
    words = draw(st.lists(st.sampled_from(WORDS), min_size=n, max_size=n))
    spaces = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    tags, i = ["O"] * n, 0
    while i < n:
        if draw(st.booleans()):
            length = draw(st.integers(1, min(3, n - i)))
            label = draw(st.sampled_from(LABELS))
            tags[i:i + length] = [f"B-{label}"] + [f"I-{label}"] * (length - 1)
            i += length + 1  # a gap, so neighbouring mentions stay two
        else:
            i += 1
    ref = Doc(NLP.vocab, words=words, spaces=spaces, ents=tags)
    return Example(NLP.make_doc(ref.text), ref)


def labels(doc):
    return [ent.label_ for ent in doc.ents]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(examples(), min_size=1, max_size=8), which=st.sampled_from(AUGMENTERS),
       seed=st.integers(0, 3))
def test_every_variant_keeps_its_entities_on_its_text(stream, which, seed):
    augment = which(prob=1.0, rate=1.0, keep=1.0, seed=seed)
    for eg in stream:
        out = list(augment(NLP, eg))
        assert out[0] is eg  # keep = 1: the original comes first, untouched
        for variant in out[1:]:
            ref = variant.reference
            assert variant.predicted.text == ref.text
            assert labels(ref) == labels(eg.reference)  # one mention for one, same types, same order
            for ent in ref.ents:  # each entity is whole tokens of the new text, non-empty
                assert ent.text == ref.text[ent.start_char:ent.end_char] and ent.text.strip()
            outside = [t.text for t in ref if not t.ent_type_]
            assert outside == [t.text for t in eg.reference if not t.ent_type_]  # only mentions change
            assert variant.reference.text != eg.reference.text


def test_rates_and_seeds():
    stream = [Example(NLP.make_doc(t), Doc(NLP.vocab, words=t.split(), ents=tags))
              for t, tags in [("Anna met Kofi", ["B-PER", "O", "B-PER"]), ("IBM hired Smith", ["B-ORG", "O", "B-PER"])] * 50]
    none = mention_typos(prob=0.0, seed=1)
    assert all(len(list(none(NLP, eg))) == 1 for eg in stream)  # prob 0: the original only
    only = mention_typos(prob=1.0, rate=1.0, keep=0.0, seed=1)
    outs = [list(only(NLP, eg)) for eg in stream]
    assert all(len(o) == 1 and o[0] is not eg for o, eg in zip(outs, stream))  # keep 0: variants only
    half = mention_typos(prob=0.5, rate=1.0, keep=1.0, seed=1)
    n_variants = sum(len(list(half(NLP, eg))) - 1 for eg in stream)
    assert 30 <= n_variants <= 70  # about half of 100
    def texts(seed):
        swap = mention_swap(prob=1.0, seed=seed)
        return [v.reference.text for eg in stream for v in swap(NLP, eg)]

    assert texts(7) == texts(7) and texts(7) != texts(8)
    with pytest.raises(BertflowError, match=r"\[NER013\].*rate"):
        mention_swap(rate=1.5)


def test_the_mix_draws_each_mentions_change_by_weight():
    people = ["Anna", "Kofi", "Smith", "Obama", "Merkel", "Putin"]
    stream = [Example(NLP.make_doc(f"{a} met {b}"), Doc(NLP.vocab, words=[a, "met", b], ents=["B-PER", "O", "B-PER"]))
              for a in people for b in people if a != b] * 4

    def changed_words(**weights):
        mix = mention_mix(prob=1.0, rate=1.0, keep=0.0, seed=3, **weights)
        out = [(eg, v) for eg in stream for v in mix(NLP, eg)]
        return [(o.text, n.text) for eg, v in out for o, n in zip(eg.reference.ents, v.reference.ents)]

    typos_only = changed_words(swap=0, unseen=0, typos=1)
    assert typos_only and all(o != n and abs(len(o) - len(n)) <= 1 and n not in people for o, n in typos_only)
    swaps_only = changed_words(swap=1, unseen=0, typos=0)
    assert all(n in people for o, n in swaps_only) and any(o != n for o, n in swaps_only)
    longer_only = changed_words(swap=0, unseen=0, typos=0, longer=1)
    assert all(n.startswith(o + " ") and len(n.split()) == 2 for o, n in longer_only)
    mixed = changed_words(swap=1, unseen=1, typos=1, longer=1)
    kinds = {"longer" if " " in n else "swap" if n in people else "other" for o, n in mixed}
    assert kinds == {"longer", "swap", "other"}  # every kind drawn; one variant per example either way
    assert len(mixed) <= 2 * len(stream)
    for bad in ({"swap": 0, "unseen": 0, "typos": 0}, {"typos": -1}):
        with pytest.raises(BertflowError, match=r"\[NER018\]"):
            mention_mix(**bad)


def test_generated_names_and_typos_read_as_words():
    import random

    rng = random.Random(0)
    names = {pseudo_word(rng, ["Obama", "Merkel", "Putin", "Johnson"], "Xxxx") for _ in range(50)}
    assert len(names) > 10 and all(n[0].isupper() and n[1:].islower() for n in names)
    assert pseudo_word(rng, ["Obama"], "IBM").isupper() and pseudo_word(rng, ["Obama"], "3") == "3"
    assert typo(rng, "at") == "at" and all(abs(len(typo(rng, "London")) - 6) <= 1 for _ in range(50))
    assert all(typo(rng, w) != w for w in ("London", "Anna", "Mississippi", "IBM") for _ in range(50))


def test_composes_with_spacy_lower_case():
    chained = registry.resolve({"a": {"@augmenters": "bertflow_ner.chain.v1",
                                      "first": {"@augmenters": "bertflow_ner.unseen_names.v1", "prob": 1.0, "rate": 1.0},
                                      "second": {"@augmenters": "spacy.lower_case.v1", "level": 1.0}}})["a"]
    eg = Example(NLP.make_doc("Anna Smith visited Paris ."),
                 Doc(NLP.vocab, words="Anna Smith visited Paris .".split(), ents=["B-PER", "I-PER", "O", "B-LOC", "O"]))
    out = list(chained(NLP, eg))
    assert len(out) == 2 and all(v.reference.text == v.reference.text.lower() for v in out)
    assert [labels(v.reference) for v in out] == [["PER", "LOC"], ["PER", "LOC"]]
    assert out[1].reference.ents[0].text != "anna smith"


def test_variants_ride_along_with_their_originals_in_group_batches():
    import random

    texts = [("Anna met Kofi", ["B-PER", "O", "B-PER"]), ("IBM hired Smith", ["B-ORG", "O", "B-PER"]),
             ("it rained", ["O", "O"])]
    stream = [Example(NLP.make_doc(t), Doc(NLP.vocab, words=t.split(), ents=tags)) for t, tags in texts * 40]
    mix = mention_mix(prob=0.7, rate=1.0, keep=1.0, seed=0)
    examples = [out for eg in stream for out in mix(NLP, eg)]
    originals = {id(eg) for eg in stream}
    assert 40 < len(examples) - len(stream) <= 80  # about 0.7 of the 80 with mentions got a variant
    random.Random(0).shuffle(examples)  # as spaCy shuffles an epoch before batching it
    batcher = registry.resolve({"b": {"@batchers": "bertflow.batch_by_group.v1", "size": 8,
                                      "group_attr": "variant_group"}})["b"]
    batches = list(batcher(examples))
    assert all(sum(id(eg) in originals for eg in batch) == 8 for batch in batches)  # 8 originals a step
    for batch in batches:
        variants = [eg for eg in batch if id(eg) not in originals]
        groups = {eg.reference._.variant_group for eg in batch if id(eg) in originals}
        assert all(v.reference._.variant_group in groups for v in variants)  # beside its own original
    assert sum(len(b) for b in batches) == len(examples)  # nothing lost
    # a doc read again in a later epoch with no variant this time carries no stale tag
    plain = mention_mix(prob=0.0, seed=0)
    assert all(eg.reference._.variant_group is None for e in stream for eg in plain(NLP, e))


def test_a_corpus_config_with_the_augmenters_trains_the_tiny_ner(tiny_bert_dir, tmp_path):
    from spacy.tokens import DocBin
    from thinc.api import Adam

    from bertflow.api import tiny_encoder_config

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.add_pipe("bertflow_ner", name="ner", config={"model": {"dropout": 0.0}})
    sents = [("john lives in paris", ["B-PER", "O", "O", "B-LOC"]), ("mary ran to london", ["B-PER", "O", "O", "B-LOC"]),
             ("steve jobs founded apple", ["B-PER", "I-PER", "O", "B-ORG"]), ("google is in new york", ["B-ORG", "O", "O", "B-LOC", "I-LOC"])]
    DocBin(docs=[Doc(nlp.vocab, words=t.split(), ents=tags) for t, tags in sents]).to_disk(tmp_path / "train.spacy")
    corpus = registry.resolve({"c": {
        "@readers": "spacy.Corpus.v1", "path": str(tmp_path / "train.spacy"), "gold_preproc": False,
        "augmenter": {"@augmenters": "bertflow_ner.chain.v1",
                      "first": {"@augmenters": "bertflow_ner.mention_swap.v1", "prob": 1.0, "rate": 1.0, "seed": 1},
                      "second": {"@augmenters": "bertflow_ner.mention_typos.v1", "prob": 0.5, "seed": 2}}}})["c"]
    egs = list(corpus(nlp))
    assert len(egs) > len(sents)  # the variants joined the originals
    nlp.initialize(lambda: egs)
    optimizer = Adam(5e-3)
    losses = [nlp.update(egs, sgd=optimizer)["ner"] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_stress_writes_variants_whose_entities_are_where_they_say(tmp_path):
    from spacy.tokens import DocBin

    from bertflow.api import run_cli

    docs = [Doc(NLP.vocab, words=t.split(), ents=tags) for t, tags in [
        ("Anna Smith visited Paris .", ["B-PER", "I-PER", "O", "B-LOC", "O"]),
        ("IBM hired Kofi in London", ["B-ORG", "O", "B-PER", "O", "B-LOC"]),
        ("The Bank of England said no", ["O", "B-ORG", "I-ORG", "I-ORG", "O", "O"])]]
    DocBin(docs=docs).to_disk(tmp_path / "dev.spacy")
    result = run_cli(["stress", "ner", tmp_path / "dev.spacy", tmp_path / "out"])
    assert result.code == 0, result.stderr
    clean = [labels(d) for d in docs]
    for name in ("clean", "unseen", "cross_type", "typos", "longer", "lower"):
        variant = list(DocBin().from_disk(tmp_path / "out" / f"{name}.spacy").get_docs(NLP.vocab))
        assert [labels(d) for d in variant] == clean, name
        for doc, original in zip(variant, docs):
            assert [t.text for t in doc if not t.ent_type_] == [
                (t.text.lower() if name == "lower" else t.text) for t in original if not t.ent_type_]
            if name not in ("clean", "lower"):
                assert doc.text != original.text, name
    lower = list(DocBin().from_disk(tmp_path / "out" / "lower.spacy").get_docs(NLP.vocab))
    assert all(d.text == d.text.lower() for d in lower)
    cross = list(DocBin().from_disk(tmp_path / "out" / "cross_type.spacy").get_docs(NLP.vocab))
    mentions = {(e.label_, e.text) for d in docs for e in d.ents}
    texts_by_label = {label: {t for lab, t in mentions if lab == label} for label, _ in mentions}
    assert all(e.text not in texts_by_label[e.label_] for d in cross for e in d.ents)  # another type's mention
    again = run_cli(["stress", "ner", tmp_path / "dev.spacy", tmp_path / "out"])
    assert again.code == 1 and "[NER017]" in again.stderr  # no silent overwrite
    assert run_cli(["stress", "ner", tmp_path / "dev.spacy", tmp_path / "out", "--force"]).code == 0
