"""The GPU path as a user takes it (skipped without CUDA): projects/multitask
trained and evaluated with --vars.gpu_id=0, then packaged in fp16 after the
accuracy guard compared every head with fp32 on the GPU."""
import json
from pathlib import Path

import numpy
import pytest

from bertflow.compress.guard import load_with_precision, package_pipeline
from bertflow.testing.fixtures import run_project

pytestmark = pytest.mark.gpu
PROJECT = Path(__file__).resolve().parents[1] / "projects" / "multitask"
HEADS = ("textcat", "ner", "qa", "similarity")
TEXTS = ["Apple was founded by Steve Jobs in Cupertino.", "A terrible film.", "Paris is big.", "日本語 🙂 text"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert_dir):
    return run_project(PROJECT, tmp_path_factory.mktemp("multitask_gpu"), encoder=tiny_bert_dir, max_steps=6,
                       warmup_steps=1, frozen_steps=2, trainable_layers=1, ner_layers=2, gpu_id=0,
                       data_dir=Path(__file__).resolve().parent / "data" / "multitask_sample")


def test_project_trains_and_evaluates_every_head_on_the_gpu(project):
    metrics = json.loads((project / "metrics" / "multitask.json").read_text())
    assert set(metrics["heads"]) == set(HEADS)
    nlp = load_with_precision(project / "training" / "multitask" / "model-best", "fp32", gpu_id=0)
    assert nlp.get_pipe("encoder").model.transformer.device.type == "cuda"
    doc = nlp(TEXTS[0])
    assert abs(sum(doc.cats.values()) - 1.0) < 1e-5 and numpy.isfinite(doc.vector).all()


def test_fp16_and_bf16_agree_with_fp32_on_the_gpu(project):
    model = project / "training" / "multitask" / "model-best"
    fp32 = [doc.cats["POSITIVE"] for doc in load_with_precision(model, "fp32", 0).pipe(TEXTS)]
    for precision in ("fp16", "bf16"):
        reduced = [doc.cats["POSITIVE"] for doc in load_with_precision(model, precision, 0).pipe(TEXTS)]
        assert numpy.allclose(reduced, fp32, atol=2e-2), (precision, reduced, fp32)


def test_fp16_package_is_checked_against_fp32(project, tmp_path):
    dev = [project / "corpus" / task / "dev.spacy" for task in HEADS]
    report = package_pipeline(project / "training" / "multitask" / "model-best", tmp_path, precision="fp16", dev=dev,
                              max_drop=100.0, gpu_id=0, name="gpu_fp16", version="0.0.1")
    assert set(report["heads"]) == set(HEADS) and report["precision"] == "fp16"
    meta = json.loads(next(Path(tmp_path).glob("en_gpu_fp16-0.0.1/**/meta.json")).read_text())
    assert meta["bertflow_precision"]["docs_per_s"]["reduced"] > 0
