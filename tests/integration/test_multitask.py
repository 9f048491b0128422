"""projects/multitask as a user runs it: four heads on one encoder trained
jointly from mixed corpora, evaluated per head, annotated, packaged and
loaded by name in a fresh virtual environment with the network off."""
import json
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy
import pytest
import torch
import spacy
from thinc.api import Adam

import bertflow
from bertflow.data.corpus import create_corpus_reader
from bertflow.errors import BertflowError
from bertflow.testing.fixtures import run_cli, run_project

pytestmark = pytest.mark.slow  # runs the multitask project

PROJECT = Path(__file__).resolve().parents[2] / "projects" / "multitask"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "multitask_sample"
HEADS = ("textcat", "ner", "qa", "similarity")


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert_dir):
    # the small samples the tests need (the project's own assets are the demo's few thousand per task)
    return run_project(PROJECT, tmp_path_factory.mktemp("multitask"), encoder=tiny_bert_dir, max_steps=4,
                       warmup_steps=1, frozen_steps=2, trainable_layers=1, ner_layers=2, data_dir=SAMPLE)


@pytest.fixture(scope="module")
def nlp(project):
    return spacy.load(project / "training" / "multitask" / "model-best")


def test_every_head_is_scored_on_its_own_dev_set(project, nlp):
    metrics = json.loads((project / "metrics" / "multitask.json").read_text())
    assert set(metrics["heads"]) == set(HEADS)
    assert metrics["n_examples"] == 40 + 40 + 20 + 80 + 40  # + the cross-encoder's pair docs (no head here scores them)
    sizes = {"textcat": 40, "ner": 40, "qa": 20, "similarity": 80}
    assert {head: metrics["heads"][head]["n_examples"] for head in HEADS} == sizes  # each on its own dev set only
    # the project's evaluate step reports what scoring each head alone on its own dev file gives
    main = {"textcat": "cats_score", "ner": "ents_f", "qa": "qa_f1", "similarity": "sim_spearman"}
    for head, task in (("textcat", "textcat"), ("ner", "ner"), ("qa", "qa"), ("similarity", "similarity")):
        examples = list(create_corpus_reader(project / "corpus" / task / "dev.spacy")(nlp))
        docs = list(nlp.pipe(eg.predicted for eg in examples))
        from spacy.training import Example

        alone = nlp.get_pipe(head).score([Example(d, eg.reference) for d, eg in zip(docs, examples)])
        assert metrics["heads"][head][main[head]] == pytest.approx(alone[main[head]], abs=1e-6), head


def test_each_head_output_is_present_and_well_formed(nlp):
    assert nlp.pipe_names == ["encoder", *HEADS]
    text = "Apple was founded by Steve Jobs in Cupertino."
    doc = nlp(text)
    assert set(doc.cats) == {"NEGATIVE", "POSITIVE"} and math.isclose(sum(doc.cats.values()), 1.0, rel_tol=1e-5)
    assert all(text[e.start_char: e.end_char] == e.text and e.label_ in {"PER", "LOC", "ORG", "MISC"} for e in doc.ents)
    assert doc.vector.shape == (32,) and numpy.isfinite(doc.vector).all()
    other = nlp("Jobs started Apple.")
    cosine = float(doc.vector @ other.vector / numpy.linalg.norm(doc.vector) / numpy.linalg.norm(other.vector))
    assert doc.similarity(other) == pytest.approx(cosine, abs=1e-5)  # the similarity head's hook, not spaCy's default
    answers = bertflow.ask(nlp, "Who founded Apple?", text, top_k=2)
    assert len(answers) == 2 and all(text[a.start_char: a.end_char] == a.text for a in answers)


def test_cross_encoder_option_trains_beside_the_four_heads(project, tiny_bert_dir):
    """configs/multitask_cross.cfg (--vars.config=multitask_cross) adds the cross-encoder."""
    from spacy.util import load_config, load_model_from_config

    config = load_config(project / "configs" / "multitask_cross.cfg",  # the tiny BERT has 2 layers: train the top one
                         overrides={"paths.encoder": str(tiny_bert_dir), "components.encoder.trainable_layers": 1,
                                    "components.encoder.model.keep_layers": 2, "components.ner.model.n_layers": 2})
    nlp = load_model_from_config(config, auto_fill=True)
    assert nlp.pipe_names == ["encoder", *HEADS, "pair_classifier"]
    egs = [eg for task in (*HEADS, "pair") for eg in examples_of(nlp, project, task)[:4]]
    from spacy.util import fix_random_seed

    fix_random_seed(0)
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-3)
    history = []
    for _ in range(15):  # the same small batch again and again: every head, the fifth too, fits it
        losses = {}
        nlp.update(egs, sgd=optimizer, losses=losses, drop=0.0)
        history.append(losses)
    for head in (*HEADS, "pair_classifier"):
        first, last = history[0][head], sum(h[head] for h in history[-3:]) / 3
        assert last < first, (head, first, last)
        if head in ("textcat", "ner", "qa"):  # the heads with a per-example target fit it clearly
            assert last < 0.85 * first, (head, first, last)
    doc = nlp.make_doc("A man plays a guitar.")
    doc._.text_pair = "Someone is playing the guitar."
    assert 0.0 <= nlp(doc)._.pair_score <= 5.0


def examples_of(nlp, project, task):
    return list(create_corpus_reader(project / "corpus" / task / "dev.spacy")(nlp))


def test_heads_without_annotation_get_no_loss(nlp, project):
    for task in HEADS:
        egs = examples_of(nlp, project, task)[:8]
        losses = {}
        nlp.update(egs, sgd=Adam(1e-5), losses=losses)
        for head in HEADS:
            if head == task:
                assert losses[head] > 0.0, (task, losses)
            else:
                assert losses[head] == 0.0, (task, head, losses)


def test_loss_weight_zero_freezes_a_head(nlp, project):
    ner = nlp.get_pipe("ner")
    egs = examples_of(nlp, project, "ner")[:8]
    out = ner.model.get_ref("output_layer")
    try:
        for weight, changes in ((0.0, False), (1.0, True)):
            ner.cfg["loss_weight"] = weight
            before = out.get_param("W").copy()
            losses = {}
            nlp.update(egs, sgd=Adam(1e-3), losses=losses)
            assert (losses["ner"] > 0) is changes
            assert (not numpy.array_equal(before, out.get_param("W"))) is changes
    finally:
        ner.cfg["loss_weight"] = 1.0


def test_loss_weight_zero_sends_the_encoder_no_gradient_from_that_head(nlp, project):
    """NER examples carry only NER annotation: with ner's loss_weight = 0 the
    encoder gets no gradient at all from them; with 1 it does."""
    ner, encoder = nlp.get_pipe("ner"), nlp.get_pipe("encoder").model.transformer
    egs = examples_of(nlp, project, "ner")[:8]

    def encoder_gradient() -> float:
        return sum(float(p.grad.abs().sum()) for p in encoder.parameters() if p.grad is not None)

    try:
        for weight in (0.0, 1.0):
            ner.cfg["loss_weight"] = weight
            encoder.zero_grad()
            nlp.update(egs, sgd=False, losses={})  # no step: the gradients stay on the weights
            assert (encoder_gradient() > 0) is (weight > 0), weight
    finally:
        ner.cfg["loss_weight"] = 1.0
        encoder.zero_grad()


def test_learn_rate_scale_multiplies_a_heads_own_step_only(nlp, project):
    """Adam's first step moves each weight by about the learning rate: a head
    with learn_rate_scale 3 moves its weights 3x as far as with 1, the
    encoder's step is the same, and 0 leaves the head where it was."""
    from bertflow.training.optimizer import make_adamw
    textcat = nlp.get_pipe("textcat")
    egs = examples_of(nlp, project, "textcat")[:8]
    out = textcat.model.get_ref("output_layer")
    state = nlp.to_bytes()

    def step(scale):
        nlp.from_bytes(state)  # the same start each time (its cfg too: set the scale after)
        textcat.cfg["learn_rate_scale"] = scale
        # the top layer (the project trains only the top one: trainable_layers = 1)
        embeddings = nlp.get_pipe("encoder").model.transformer.encoder.layer[-1].output.dense.weight
        before, emb_before = out.get_param("W").copy(), embeddings.detach().clone()
        torch.manual_seed(0)  # the same dropout masks in the encoder each time
        nlp.update(egs, sgd=make_adamw(1e-4, weight_decay=0.0, grad_clip=0.0), losses={})
        moved = float(numpy.abs(out.get_param("W") - before).sum())
        return moved, float((embeddings.detach() - emb_before).abs().sum())

    try:
        (one, encoder_one), (three, encoder_three), (zero, _) = step(1.0), step(3.0), step(0.0)
    finally:
        textcat.cfg["learn_rate_scale"] = 1.0
        nlp.from_bytes(state)
    assert one > 0 and zero == 0.0
    assert three == pytest.approx(3 * one, rel=1e-3)
    assert encoder_one > 0 and encoder_three == pytest.approx(encoder_one, rel=1e-3)


def test_a_negative_learn_rate_scale_is_refused_with_the_fix():
    nlp = spacy.blank("en")
    with pytest.raises(BertflowError, match="learn_rate_scale = -1.0 is negative"):
        nlp.add_pipe("bertflow_textcat", config={"learn_rate_scale": -1.0})


def bertflow_cli(*args, check=True):
    result = run_cli(args)
    if check:
        assert result.code == 0, result.stderr[-2000:]
    return result


def test_evaluate_cli_prints_each_head(project):
    model = project / "training" / "multitask" / "model-best"
    out = bertflow_cli("evaluate", model, project / "corpus" / "ner" / "dev.spacy", project / "corpus" / "qa" / "dev.spacy")
    assert "\nner  (main metric: ents_f)\n" in out.stdout and "qa_f1" in out.stdout
    ner_block = out.stdout.split("\nner")[1]
    assert ner_block.index("ents_f") < ner_block.index("ents_p") < ner_block.index("ents_r")  # TaskSpec.metrics order
    as_json = json.loads(bertflow_cli("evaluate", model, project / "corpus" / "textcat" / "dev.spacy", "--json").stdout)
    assert set(as_json["heads"]) == {"textcat"} and as_json["heads"]["textcat"]["n_examples"] == 40
    assert as_json["main_metrics"] == {"textcat": "cats_score"}

def test_evaluate_cli_names_a_missing_file(project, monkeypatch, capsys):
    from bertflow.cli import main

    model = project / "training" / "multitask" / "model-best"
    monkeypatch.setattr(sys, "argv", ["bertflow", "evaluate", str(model), str(project / "nope.spacy")])
    with pytest.raises(SystemExit) as exit_:
        main()  # in this process: the CLI's start-up is tested above
    assert exit_.value.code != 0 and "nope.spacy does not exist" in capsys.readouterr().err


def test_annotate_streams_resumes_and_keeps_every_row(project, tmp_path, monkeypatch, capsys):
    model = project / "training" / "multitask" / "model-best"
    rows = [{"id": 1, "text": "Apple was founded by Steve Jobs."},
            {"id": 2, "text": "The cat sat in Paris.", "question": "Where did the cat sit?"},
            "this line is not JSON",
            {"id": 4, "text": ""},
            {"id": 5, "text": "東京は日本の首都です。🙂👩‍👩‍👧 " * 200}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    first = bertflow_cli("annotate", model, src, out, "--batch-size", 2, "--vectors")
    records = {r["row"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == [0, 1, 2, 3, 4] and "5 rows" not in first.stdout
    assert "error" in records[2] and "invalid JSON" in records[2]["error"]
    assert records[1]["question"] == "Where did the cat sit?" and records[1]["spans"]["answers"]
    for rec in (records[0], records[1], records[4]):
        text = rec["text"]
        assert all(text[e["start_char"]: e["end_char"]] == e["text"] for e in rec["ents"])
        assert math.isclose(sum(rec["cats"].values()), 1.0, rel_tol=1e-5) and len(rec["vector"]) == 32
    # resume: a crash left half a line; the rerun keeps the complete rows and redoes the rest
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    again = bertflow_cli("annotate", model, src, out, "--vectors")
    assert "2 already there" in again.stdout
    assert [json.loads(line)["row"] for line in out.read_text().splitlines()] == [0, 1, 2, 3, 4]  # input order
    from bertflow.cli import main

    # without --vectors: other records, refused (in this process: the CLI's start-up is tested above)
    monkeypatch.setattr(sys, "argv", ["bertflow", "annotate", str(model), str(src), str(out)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1 and "other options" in capsys.readouterr().err


def test_annotate_frees_the_strings_of_its_texts(nlp, tmp_path):
    """Chunks run inside nlp.memory_zone(): a stream of new words leaves the vocab as it was, and chunking
    changes no record."""
    from bertflow.inference.annotate import annotate

    src = tmp_path / "in.txt"
    src.write_text("".join(f"Zorblax{i} met Quindle{i} in Paris on day {i}.\n" for i in range(7)))
    before = len(nlp.vocab.strings)
    outs = []
    for chunk_size in (2, 10_000):
        out = tmp_path / f"out{chunk_size}.jsonl"
        report = annotate(nlp, src, out, chunk_size=chunk_size, progress=False)
        assert report.n_done == 7 and report.n_errors == 0
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
        assert len(nlp.vocab.strings) == before
    assert [r["row"] for r in outs[0]] == list(range(7))
    for a, b in zip(*outs):
        assert a["text"] == b["text"] and a["ents"] == b["ents"]
        assert all(a["text"][e["start_char"]: e["end_char"]] == e["text"] for e in a["ents"])
        assert a["cats"] == pytest.approx(b["cats"], abs=1e-5)


def test_packaged_pipeline_loads_by_name_in_a_fresh_venv_offline(project, tmp_path):
    wheels = list((project / "packages").glob("en_multitask-0.1.0/dist/*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The fresh venv sees the already-installed dependencies (spacy, torch, the bertflow plugins)
    # through a site dir, so the test needs no network; the pipeline itself is pip-installed.
    Path(site, "_deps.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheels[0])], check=True)
    script = (
        "import socket\n"
        "def blocked(*a, **k): raise OSError('network is off in this test')\n"
        "socket.socket.connect = blocked; socket.create_connection = blocked\n"
        "import spacy, json, sys\n"
        "nlp = spacy.load('en_multitask')\n"
        "doc = nlp('Apple was founded by Steve Jobs in Cupertino.')\n"
        "print(json.dumps({'pipes': nlp.pipe_names, 'cats': sorted(doc.cats), 'n_ents': len(doc.ents), "
        "'path': spacy.util.get_package_path('en_multitask').as_posix()}))\n"
    )
    result = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["pipes"] == ["encoder", *HEADS] and info["cats"] == ["NEGATIVE", "POSITIVE"]
    assert info["path"].startswith(str(venv))  # loaded from the fresh venv's install


def test_annotate_with_two_processes_matches_one(project, tmp_path):
    """--n-process 2 (spawned workers) gives the records of one process, in input order, unreadable rows included."""
    from bertflow.inference.annotate import annotate

    model = project / "training" / "multitask" / "model-best"
    src = tmp_path / "in.jsonl"
    texts = ["Apple was founded by Steve Jobs.", "The talks in Brussels collapsed.", "", "A gorgeous film.", "東京 🙂"]
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
    lines.insert(2, "{not json")
    src.write_text("\n".join(lines) + "\n", encoding="utf8")
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    # the reference, in this process, from a fresh load (the module's `nlp` is updated by other tests)
    annotate(spacy.load(model), src, one, batch_size=2, progress=False)
    bertflow_cli("annotate", model, src, two, "--batch-size", 2, "--n-process", 2)
    a = [json.loads(line) for line in one.read_text(encoding="utf8").splitlines()]
    b = [json.loads(line) for line in two.read_text(encoding="utf8").splitlines()]
    assert [r["row"] for r in a] == [r["row"] for r in b] == [0, 1, 2, 3, 4, 5]
    assert "invalid JSON" in b[2]["error"]
    for x, y in zip(a, b):
        assert x.get("ents") == y.get("ents") and x.get("error", "").split(":")[-1] == y.get("error", "").split(":")[-1]
        assert x.get("cats", {}) == pytest.approx(y.get("cats", {}), abs=1e-5)
    refused = bertflow_cli("annotate", model, src, tmp_path / "v.jsonl", "--n-process", 2, "--vectors", check=False)
    assert refused.code != 0 and "--vectors needs --n-process 1" in refused.stderr
