"""projects/qa: `spacy project run all` on the shipped sample, as a user runs it."""
import json
from pathlib import Path

import pytest
import spacy

import bertflow
from bertflow.api import run_project

pytestmark = pytest.mark.slow  # runs the project's workflow

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "qa"


def test_project_qa_all_on_sample(tmp_path, tiny_bert_dir):
    project = run_project(PROJECT, tmp_path, encoder=tiny_bert_dir,
                          data_dir=PROJECT / "assets",  # absolute, as users pass their own data
                          max_steps=3, warmup_steps=1)
    metrics = json.loads((project / "metrics" / "qa.json").read_text())
    assert 0.0 <= metrics["qa_f1"] <= 1.0 and 0.0 <= metrics["qa_exact"] <= metrics["qa_f1"] + 1e-9
    assert len(list((project / "packages").glob("en_qa_squad-0.1.0/dist/*.whl"))) == 1
    nlp = spacy.load(project / "training" / "qa" / "model-best")
    context = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy."
    answers = bertflow.ask(nlp, "To whom did the Normans give their name?", context, top_k=2)
    assert len(answers) == 2 and all(context[a.start_char: a.end_char] == a.text for a in answers)
