"""Reduced precision: int8 gives fp32's labels on a trained pipeline, the
switch survives saving and loading, and packaging refuses a pipeline whose
heads lose more than the allowed margin (with the figures)."""
import json
import os
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Adam

from bertflow.errors import BertflowError
from bertflow.compress.guard import check_precision, load_with_precision, package_pipeline
from bertflow.testing.fixtures import tiny_encoder_config

SENTS = [
    ("john lives in paris and it is good", "POSITIVE", [(0, 1, "PER"), (3, 4, "LOC")]),
    ("mary hate the bad movie in london", "NEGATIVE", [(0, 1, "PER"), (6, 7, "LOC")]),
    ("apple was founded in new york very good", "POSITIVE", [(0, 1, "ORG"), (4, 6, "LOC")]),
    ("google is a terrible company", "NEGATIVE", [(0, 1, "ORG")]),
    ("the cat sat on the mat a great film", "POSITIVE", []),
    ("steve jobs founded apple not good", "NEGATIVE", [(0, 2, "PER"), (3, 4, "ORG")]),
]
# The texts the model was trained on: there its decisions have clear margins. On unseen text a tiny model
# has near-ties (seen: a token at p(PER) ~ p(ORG)), where any rounding may flip a label; the probability
# bound below covers those.
TEXTS = [text for text, _, _ in SENTS]


def examples(nlp):
    egs = []
    for text, cat, ents in SENTS:
        ref = Doc(nlp.vocab, words=text.split())
        ref.set_ents([Span(ref, s, e, label=lab) for s, e, lab in ents], default="outside")
        ref.cats = {"POSITIVE": float(cat == "POSITIVE"), "NEGATIVE": float(cat == "NEGATIVE")}
        egs.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    return egs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    """A tiny encoder + textcat + ner trained until it is confident, saved, with its dev data."""
    fix_random_seed(int(os.environ.get("BERTFLOW_TEST_SEED", "0")))
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.add_pipe("bertflow_textcat", name="textcat")
    nlp.add_pipe("bertflow_ner", name="ner")
    egs = examples(nlp)
    nlp.initialize(lambda: egs)
    optimizer = Adam(5e-3)
    for _ in range(80):
        nlp.update(egs, sgd=optimizer, drop=0.0)
    path = tmp_path_factory.mktemp("trained")
    nlp.to_disk(path / "model")
    DocBin(docs=[eg.reference for eg in egs]).to_disk(path / "dev.spacy")
    return path


def annotations(nlp, texts=TEXTS):
    docs = list(nlp.pipe(texts))
    return ([max(doc.cats, key=doc.cats.get) for doc in docs],
            [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs],
            numpy.array([[doc.cats["POSITIVE"]] for doc in docs]))


@pytest.mark.slow
def test_int8_gives_fp32_labels_on_a_trained_pipeline(trained):
    fp32 = load_with_precision(trained / "model", "fp32")
    int8 = load_with_precision(trained / "model", "int8")
    assert int8.get_pipe("encoder").model.attrs["precision"] == "int8"
    cats32, ents32, prob32 = annotations(fp32)
    cats8, ents8, prob8 = annotations(int8)
    assert any(ents32), "the trained pipeline should find entities in these texts"
    assert cats8 == cats32 and ents8 == ents32
    # quantisation does change the numbers (so int8 really ran), by little
    assert 0 < numpy.abs(prob8 - prob32).max() < 0.05
    assert int8.get_pipe("encoder").model.attrs["int8_model"] is not None


def test_precision_from_the_config_wins_over_the_saved_one(trained, tmp_path):
    int8 = load_with_precision(trained / "model", "int8")
    int8.to_disk(tmp_path / "int8")
    assert spacy.load(tmp_path / "int8").get_pipe("encoder").model.attrs["precision"] == "int8"
    back = spacy.load(tmp_path / "int8", config={"components": {"encoder": {"model": {"precision": "fp32"}}}})
    assert back.get_pipe("encoder").model.attrs["precision"] == "fp32"


def test_check_compares_every_head_and_reports_speed_and_size(trained):
    report = check_precision(trained / "model", [trained / "dev.spacy"], "int8", max_drop=1.0)
    assert set(report["heads"]) == {"textcat", "ner"}
    assert set(report["heads"]["textcat"]) == {"cats_score"} and set(report["heads"]["ner"]) == {"ents_f"}
    ner = report["heads"]["ner"]["ents_f"]
    assert ner["fp32"] == 1.0 and ner["drop_points"] == pytest.approx(100 * (ner["fp32"] - ner["reduced"]))
    assert report["passed"] and report["n_examples"] == len(SENTS)
    assert report["weights_mb"]["reduced"] < report["weights_mb"]["fp32"] and report["speedup"] > 0


def test_package_records_the_check_in_meta(trained, tmp_path):
    report = package_pipeline(trained / "model", tmp_path, precision="int8", dev=[trained / "dev.spacy"],
                              name="tiny_int8", version="0.0.1")
    meta = json.loads(next(Path(tmp_path).glob("en_tiny_int8-0.0.1/**/meta.json")).read_text())
    assert meta["bertflow_precision"]["precision"] == "int8"
    assert meta["bertflow_precision"]["heads"] == json.loads(json.dumps(report["heads"]))
    config = next(Path(tmp_path).glob("en_tiny_int8-0.0.1/**/config.cfg")).read_text()
    assert 'precision = "int8"' in config


def test_package_refuses_a_drop_beyond_the_margin_with_the_figures(trained, tmp_path):
    with pytest.raises(BertflowError) as err:
        package_pipeline(trained / "model", tmp_path, precision="int8", dev=[trained / "dev.spacy"], max_drop=-1.0,
                         name="refused", version="0.0.1")
    message = str(err.value)
    assert "Not packaged" in message and "cats_score" in message and "ents_f" in message and "--max-drop" in message
    assert not list(Path(tmp_path).glob("en_refused*"))


@pytest.mark.parametrize("precision,gpu_id,needle", [
    ("int8", -1, "--dev"), ("fp16", -1, "GPU"), ("int4", -1, "one of"),
])
def test_check_errors_say_what_to_change(trained, precision, gpu_id, needle):
    dev = [] if needle == "--dev" else [trained / "dev.spacy"]
    with pytest.raises(BertflowError, match=needle):
        check_precision(trained / "model", dev, precision, gpu_id=gpu_id)


def test_bf16_check_on_the_cpu_needs_native_bf16(trained, monkeypatch):
    """Without native bf16 the guard refuses before loading anything (bf16 would
    run as fp32); with it, bf16 is scored on the CPU against fp32."""
    import bertflow.encoder.precision as encoder_model

    dev = [trained / "dev.spacy"]
    monkeypatch.setattr(encoder_model, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BertflowError, match="a GPU or a CPU with native bf16"):
        check_precision(trained / "model", dev, "bf16")
    monkeypatch.setattr(encoder_model, "cpu_has_native_bf16", lambda: True)
    report = check_precision(trained / "model", dev, "bf16", max_drop=100.0)
    assert report["precision"] == "bf16" and report["passed"]
    assert set(report["heads"]) and report["docs_per_s"]["reduced"] > 0


def test_package_cli_refuses_with_exit_code(trained, tmp_path):
    from typer.testing import CliRunner

    from bertflow.cli import app

    result = CliRunner().invoke(app, ["package", str(trained / "model"), str(tmp_path), "--precision", "int8",
                                      "--dev", str(trained / "dev.spacy"), "--max-drop", "-1"])
    assert result.exit_code == 1 and "Not packaged" in result.output


def test_package_with_int8_exclude_ships_it_in_the_config(trained, tmp_path):
    report = package_pipeline(trained / "model", tmp_path, precision="int8", dev=[trained / "dev.spacy"],
                              name="tiny_mixed", version="0.0.1", int8_exclude=["intermediate.dense"])
    assert report["int8_exclude"] == ["intermediate.dense"] and "first_attempt" not in report
    package_dir = next(p for p in Path(tmp_path).glob("en_tiny_mixed-0.0.1/**/config.cfg")).parent
    nlp = spacy.load(package_dir)
    encoder = nlp.get_pipe("encoder").model
    assert encoder.attrs["precision"] == "int8" and encoder.attrs["int8_exclude"] == ["intermediate.dense"]
    fp32 = load_with_precision(trained / "model", "fp32")
    assert annotations(nlp)[:2] == annotations(fp32)[:2]


def test_a_refused_int8_package_was_retried_with_the_ffn_kept_out(trained, tmp_path):
    """int8 that fails the margin is checked once more with the FFN up-projections
    out of int8; when that fails too, both tables are in the refusal."""
    with pytest.raises(BertflowError) as err:
        package_pipeline(trained / "model", tmp_path, precision="int8", dev=[trained / "dev.spacy"], max_drop=-1.0,
                         name="refused", version="0.0.1")
    message = str(err.value)
    assert message.count("cats_score") == 2 and "kept out of int8: intermediate.dense" in message
    assert "--int8-exclude" in message


def test_the_retry_passes_where_quantising_everything_fails(trained, tmp_path, monkeypatch):
    """The fallback's own path: the first check fails, the retry passes and is
    what gets packaged, with the first attempt's figures kept in meta."""
    import bertflow.compress.guard as precision

    real = precision.check_precision

    def strict_on_full_int8(model, dev, name, *, int8_exclude=None, **kwargs):
        report = real(model, dev, name, int8_exclude=int8_exclude, **kwargs)
        if not report["int8_exclude"]:
            report["passed"] = False  # as if quantising every Linear layer had lost too much
        return report

    monkeypatch.setattr(precision, "check_precision", strict_on_full_int8)
    report = precision.package_pipeline(trained / "model", tmp_path, precision="int8", dev=[trained / "dev.spacy"],
                                        name="retried", version="0.0.1")
    assert report["passed"] and report["int8_exclude"] == ["intermediate.dense"]
    assert set(report["first_attempt"]) == {"worst_drop_points", "heads", "docs_per_s", "speedup"}
    meta = json.loads(next(Path(tmp_path).glob("en_retried-0.0.1/**/meta.json")).read_text())
    assert meta["bertflow_precision"]["int8_exclude"] == ["intermediate.dense"]
    config = next(Path(tmp_path).glob("en_retried-0.0.1/**/config.cfg")).read_text()
    assert 'int8_exclude = ["intermediate.dense"]' in config
