"""projects/ner: `spacy project run all` on the shipped sample, as a user runs it."""
import json
from pathlib import Path

import spacy

from bertflow.api import run_project

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "ner"


def test_project_ner_all_on_sample(tmp_path, tiny_bert_dir):
    project = run_project(PROJECT, tmp_path, encoder=tiny_bert_dir,
                          data_dir=PROJECT / "assets",  # absolute, as users pass their own data
                          max_steps=4, warmup_steps=1)
    metrics = json.loads((project / "metrics" / "ner.json").read_text())
    assert 0.0 <= metrics["ents_f"] <= 1.0 and "ents_per_type" in metrics
    assert len(list((project / "packages").glob("en_ner_conll-0.1.0/dist/*.whl"))) == 1
    nlp = spacy.load(project / "training" / "ner" / "model-best")
    doc = nlp("Peter Blackburn visited Brussels .")
    assert all(ent.label_ in {"PER", "LOC", "ORG", "MISC"} for ent in doc.ents)
