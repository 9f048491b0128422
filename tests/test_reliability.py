"""Reliability across every head: fuzzed text never breaks the pipeline or
its outputs, batches of empty docs work, several processes give the results
of one, training is deterministic, and ``bertflow check`` reports it all.

The fuzz test runs a bounded, derandomised number of examples in CI
(BERTFLOW_FUZZ_EXAMPLES, default 40); ``make fuzz`` runs 10,000.
"""
import os

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, example, given, settings, strategies as st
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Adam

from bertflow.inference.check import CJK, COMBINING, CONTROL, EMOJI, RTL, ZERO_WIDTH, check_pipeline, doc_problems
from bertflow.testing.fixtures import tiny_encoder_config

HEADS = ("textcat", "ner", "qa", "similarity")
FUZZ_EXAMPLES = int(os.environ.get("BERTFLOW_FUZZ_EXAMPLES", "40"))


def build(tiny_bert_dir, seed=0):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window=32, stride=24))
    for head in HEADS:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    egs = []
    for i, text in enumerate(["john lives in paris", "a bad film", "apple was founded in new york", "the cat sat"]):
        ref = Doc(nlp.vocab, words=text.split())
        ref.cats = {"POSITIVE": float(i % 2 == 0), "NEGATIVE": float(i % 2 == 1)}
        ref.set_ents([Span(ref, 0, 1, label=("PER", "ORG")[i % 2])], default="outside")
        egs.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    nlp.initialize(lambda: egs)
    return nlp, egs


@pytest.fixture(scope="module")
def nlp(tiny_bert_dir):
    return build(tiny_bert_dir)[0]


odd_chars = st.sampled_from(list(CONTROL + ZERO_WIDTH + COMBINING + RTL + CJK) + EMOJI + [" ", "\n", "\t", "\u00a0"])
texts = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200),  # any unicode (no lone surrogates)
    st.lists(st.one_of(odd_chars, st.sampled_from(["the", "cat", "paris", "who", "?", "."])), max_size=60).map("".join),
    st.text(alphabet=" \t\n\r\u3000\u00a0", max_size=30),  # whitespace only, or empty
)


@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@pytest.mark.slow
@given(text=texts, question=st.one_of(st.none(), texts))
@example(text=("the cat sat on the mat " * 5000)[:100_000], question=None)  # 100,000 characters
@example(text="x" * 5000, question="who?")  # one token of thousands of wordpieces
@example(text="\u200b\u0301\u200d", question="\u200b")  # no wordpieces at all
@example(text="👩\u200d👩\u200d👧 in 日本語 שלום", question="who?")
def test_fuzzed_text_never_breaks_any_head(nlp, text, question):
    doc = nlp.make_doc(text)
    doc._.text_pair = question
    doc = nlp(doc)
    assert doc.text == text  # nothing lost or rewritten
    assert doc_problems(doc, nlp) == []


def test_a_batch_of_only_empty_docs_gets_every_output(nlp):
    docs = list(nlp.pipe(["", "", "  "]))
    assert len(docs) == 3
    for doc in docs:
        assert doc_problems(doc, nlp) == [] and set(doc.cats) == {"POSITIVE", "NEGATIVE"} and not doc.ents
    assert docs[0].vector.shape == (32,)


def test_two_processes_give_the_results_of_one(nlp):
    texts = [f"john lives in paris {i} " * (i % 5 + 1) for i in range(40)] + ["", "日本語 🙂"]
    one = list(nlp.pipe(texts, batch_size=8))
    two = list(nlp.pipe(texts, batch_size=8, n_process=2))
    assert [d.text for d in two] == texts
    for a, b in zip(one, two):
        # batches differ between the runs (so do padding and summation order): floats agree to rounding
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        assert max(a.cats, key=a.cats.get) == max(b.cats, key=b.cats.get)
        numpy.testing.assert_allclose(list(a.cats.values()), list(b.cats.values()), atol=1e-5)
        # doc.vector is a user hook, which spaCy does not carry across processes; the vector itself comes back
        numpy.testing.assert_allclose(a._.sim_vector, b._.sim_vector, atol=1e-5)


def test_training_twice_with_one_seed_gives_identical_weights(tiny_bert_dir):
    weights = []
    for _ in range(2):
        nlp, egs = build(tiny_bert_dir, seed=7)
        optimizer = Adam(1e-3)
        for _ in range(3):
            nlp.update(egs, sgd=optimizer, drop=0.1)
        weights.append({name: pipe.to_bytes() for name, pipe in nlp.pipeline})
    assert weights[0] == weights[1]


@pytest.mark.slow
def test_check_reports_a_pass_for_every_class_and_round_trip(nlp, tmp_path):
    nlp.to_disk(tmp_path / "pipeline")
    rows = check_pipeline(str(tmp_path / "pipeline"), n_per_class=2)
    names = [name for name, _, _ in rows]
    assert "fuzz: 100,000 characters" in names and "round-trip: pickle" in names
    assert all(ok for _, ok, _ in rows), [r for r in rows if not r[1]]


@pytest.mark.slow
def test_check_cli_passes_a_good_pipeline_and_fails_a_broken_one(nlp, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bertflow.cli import app

    nlp.to_disk(tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["check", str(tmp_path / "pipeline"), "--n-per-class", "1"])
    assert result.exit_code == 0 and "PASS  fuzz: CJK" in result.output and "FAIL" not in result.output

    # a planted problem in the outputs makes the command fail, naming it
    monkeypatch.setattr("bertflow.inference.check.doc_problems", lambda doc, nlp=None: ["planted problem"])
    result = CliRunner().invoke(app, ["check", str(tmp_path / "pipeline"), "--n-per-class", "1"])
    assert result.exit_code == 1 and "FAIL" in result.output and "planted problem" in result.output


@pytest.mark.slow
def test_every_bad_input_gets_a_bertflow_error_and_odd_text_none(tmp_path):
    """scripts/bad_inputs.py (which writes the table in docs/RELIABILITY.md): each bad model,
    config or data file raises a BertflowError that says what to do; odd text raises nothing."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).parents[1] / "scripts" / "bad_inputs.py")
    bad_inputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bad_inputs)
    seen = set()
    for where, name, func in bad_inputs.cases(tmp_path):
        message = bad_inputs.outcome(func)
        seen.add(where)
        if where == "edges":  # the trust-at-every-edge cases: tests/integration/test_edges.py checks each outcome itself
            assert "traceback" not in message.lower() and "\n" not in message.strip(), (name, message)
            continue
        if where == "text" or "--skip-bad" in name or "the record written" in name:
            assert message.startswith("(no error)"), (name, message)
        elif "a warning" in name:
            assert message.startswith("UserWarning"), (name, message)
        else:
            assert message.startswith(("BertflowError", "UnknownEncoderError", "UnsafeModelError")), (name, message)
            if where in ("loading", "annotate", "convert"):
                assert "\n" not in message.strip(), (name, message)  # one line for the user
    assert {"models", "loading", "annotate", "convert", "config", "textcat convert", "ner convert",
            "similarity convert", "qa convert", "text"} <= seen
