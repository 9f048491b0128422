"""projects/similarity: `spacy project run all` on the shipped sample, as a user runs it."""
import json
from pathlib import Path

import pytest
import spacy

from bertflow.api import run_project

pytestmark = pytest.mark.slow  # runs the project's workflow

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "similarity"


def test_project_similarity_all_on_sample(tmp_path, tiny_bert_dir):
    project = run_project(PROJECT, tmp_path, encoder=tiny_bert_dir,
                          data_dir=PROJECT / "assets",  # absolute, as users pass their own data
                          max_steps=4, warmup_steps=1)
    bi = json.loads((project / "metrics" / "bi.json").read_text())
    cross = json.loads((project / "metrics" / "cross.json").read_text())
    assert -1.0 <= bi["sim_spearman"] <= 1.0 and -1.0 <= cross["pair_spearman"] <= 1.0
    assert len(list((project / "packages").glob("en_similarity_stsb-0.1.0/dist/*.whl"))) == 1
    nlp = spacy.load(project / "training" / "bi" / "model-best")
    a, b = nlp("A man is playing a guitar."), nlp("A man is playing a guitar.")
    assert abs(a.similarity(b) - 1.0) < 1e-5
    cross_nlp = spacy.load(project / "training" / "cross" / "model-best")
    from bertflow_similarity import score_pairs

    (score,) = score_pairs(cross_nlp, [("A man is playing a guitar.", "A person plays guitar.")])
    assert 0.0 <= score <= 5.0
