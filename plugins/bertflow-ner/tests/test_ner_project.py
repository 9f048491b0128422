"""projects/ner: `spacy project run all` on the shipped sample, as a user runs it."""
import json
from pathlib import Path

import pytest
import spacy

from bertflow.api import run_project

pytestmark = pytest.mark.slow  # runs the project's workflow

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "ner"


def test_project_ner_all_on_sample(tmp_path, tiny_bert_dir):
    project = run_project(PROJECT, tmp_path, encoder=tiny_bert_dir,
                          data_dir=PROJECT / "assets",  # absolute, as users pass their own data
                          max_steps=4, warmup_steps=1)
    metrics = json.loads((project / "metrics" / "ner.json").read_text())
    assert len(list((project / "packages").glob("en_ner_conll-0.1.0/dist/*.whl"))) == 1
    nlp = spacy.load(project / "training" / "ner" / "model-best")
    # the evaluate step scored this model on the converted dev sample: re-scoring it gives the same figures
    from spacy.training import Corpus

    dev = list(Corpus(project / "corpus" / "ner" / "dev.spacy")(nlp))
    assert len(dev) > 10 and sum(len(eg.reference.ents) for eg in dev) > 10
    again = nlp.evaluate(dev)
    assert metrics["ents_f"] == pytest.approx(again["ents_f"]) and metrics["ents_per_type"].keys() == \
        again["ents_per_type"].keys()
    assert set(metrics["ents_per_type"]) <= {"PER", "LOC", "ORG", "MISC"}
    assert nlp.get_pipe("ner").labels == ("LOC", "MISC", "ORG", "PER")  # every label of the sample
    doc = nlp("Peter Blackburn visited Brussels .")
    assert doc.has_annotation("ENT_IOB") and doc.text == "Peter Blackburn visited Brussels ."
    # the stress step scored the same model on each variant of the dev sample; its clean row is the dev score
    stress = json.loads((project / "corpus" / "ner" / "stress" / "scores.json").read_text())
    assert set(stress) == {"clean", "unseen", "cross_type", "typos", "longer", "lower"}
    assert stress["clean"]["ents_f"] == pytest.approx(metrics["ents_f"])


def test_project_command_runs_as_a_user_types_it(tmp_path):
    """`spacy project run convert` in a subprocess, exactly as typed (the other project tests run the
    workflow in the test's process): weasel starts the plugin's converter through `python -m bertflow`."""
    project = run_project(PROJECT, tmp_path, workflow="convert", in_process=False, data_dir=PROJECT / "assets")
    assert (project / "corpus" / "ner" / "train.spacy").stat().st_size > 0
    assert (project / "corpus" / "ner" / "dev.spacy").stat().st_size > 0
    assert "convert" in (project / "project.lock").read_text()


def test_project_ner_compress_workflow(tmp_path, tiny_bert_dir):
    """`spacy project run compress`: train, distil the encoder on the train texts, then the measured ladder."""
    project = run_project(PROJECT, tmp_path, workflow="compress", encoder=tiny_bert_dir, max_steps=2,
                          warmup_steps=1, student_layers=1, general_steps=2, distill_steps=2, max_loss=100)
    encoder = json.loads((project / "metrics" / "encoder-l1.json").read_text())
    assert encoder["student_layers"] == 1 and encoder["steps"] == 2
    ladder = json.loads((project / "metrics" / "ner-compress.json").read_text())
    names = [r["name"] for r in ladder["rungs"]]
    assert names[:2] == ["teacher", "teacher int8"] and "student encoder-l1" in names
    nlp = spacy.load(project / "training" / "ner-compressed")
    assert nlp.meta["bertflow_compress"]["chosen"] == ladder["chosen"]
    assert nlp("Peter Blackburn visited Brussels .").has_annotation("ENT_IOB")
