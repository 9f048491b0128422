"""General distillation of the encoder (``bertflow distill-encoder``), task
students started from it (``bertflow distill --student-encoder``) and the
ladder to the fastest pipeline within a loss (``bertflow compress``), on a
4-layer tiny BERT."""
import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import bertflow
from bertflow.api import tiny_encoder_config, write_tiny_bert
from bertflow.compress.encoder_distill import REPORT_FILE, relation_loss, text_windows
from bertflow.compress.ladder import Rung, frontier
from bertflow.errors import BertflowError
from bertflow.testing.fixtures import run_cli

TRAIN = [
    ("steve jobs founded apple in new york", "POSITIVE", [("steve jobs", "PER"), ("new york", "LOC")]),
    ("the cat sat on the mat", "NEGATIVE", []),
    ("a dog ran fast in new york city", "POSITIVE", [("new york city", "LOC")]),
    ("the dog sat on the cat", "NEGATIVE", []),
    ("steve ran to the city", "POSITIVE", [("steve", "PER")]),
    ("apple sat on a mat in york", "NEGATIVE", [("york", "LOC")]),
]
RAW = [text for text, _, _ in TRAIN] + ["the city of york and the dog of steve " * 12]  # one text over a window


def gold(nlp):
    examples = []
    for text, label, ents in TRAIN:
        doc = nlp.make_doc(text)
        ref = doc.copy()
        ref.cats = {"POSITIVE": float(label == "POSITIVE"), "NEGATIVE": float(label == "NEGATIVE")}
        ref.ents = [ref.char_span(text.index(e), text.index(e) + len(e), label=lab) for e, lab in ents]
        examples.append(Example(doc, ref))
    return examples


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    """A 4-layer tiny BERT whose layers each move the hidden states a lot
    (block weights 15x BERT's initial scale): at BERT's scale a random block
    barely changes its input, and dropping one would cost nothing to win back."""
    import torch
    from transformers import AutoModel

    path = write_tiny_bert(tmp_path_factory.mktemp("tiny4c") / "bert", layers=4, dropout=0.0)
    model = AutoModel.from_pretrained(str(path))
    with torch.no_grad():
        for name, param in model.encoder.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                param.mul_(15.0)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress_data")
    (root / "raw.txt").write_text("\n".join(RAW * 3) + "\n", encoding="utf8")
    (root / "notes.md").write_text("# not a corpus\n", encoding="utf8")
    DocBin(docs=[eg.reference for eg in gold(spacy.blank("en"))]).to_disk(root / "dev.spacy")
    return root


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny4):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny4))
    nlp.add_pipe("bertflow_textcat", name="textcat")
    nlp.add_pipe("bertflow_ner", name="ner")
    examples = gold(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-3))
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("compress_teacher") / "teacher"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def general(tmp_path_factory, tiny4, files):
    out = tmp_path_factory.mktemp("general") / "student2"
    student, report = bertflow.distill_encoder(str(tiny4), out, [files / "raw.txt"], layers=2, steps=40,
                                               batch_size=4, max_length=16, learn_rate=3e-3, progress=False)
    return out, report


# ---- the losses and the text -------------------------------------------------------------------------------


def test_relation_loss_is_zero_for_equal_relations_and_ignores_padding():
    import torch

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    assert float(relation_loss(x, x, mask, heads=2)) == pytest.approx(0.0, abs=1e-6)
    assert float(relation_loss(x, x * 0.3 + torch.randn(2, 5, 8), mask, heads=2)) > 0.01
    # what the padded positions hold changes nothing; a student of another width is compared through relations
    y = x.clone()
    y[1, 3:] = 100.0
    assert float(relation_loss(x, y, mask, heads=2)) == pytest.approx(0.0, abs=1e-6)
    assert float(relation_loss(x, torch.randn(2, 5, 4), mask, heads=2)) > 0.0


def test_long_texts_continue_in_the_next_window_and_nothing_is_dropped(tiny4, files):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny4))
    windows = list(text_windows([files / "raw.txt"], tokenizer, 16))
    assert max(len(w) for w in windows) == 16
    kept = [i for w in windows for i in w if i not in (tokenizer.cls_token_id, tokenizer.sep_token_id)]
    every = [i for text in RAW * 3 for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert kept == every


# ---- distill-encoder --------------------------------------------------------------------------------------


def test_the_general_student_has_k_layers_learns_and_loads_by_name(general, tiny4):
    out, report = general
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and report.layers == [0, 3]
    assert report.losses["hidden"] < 0.5 * report.first_losses["hidden"]
    assert report.losses["relations"] < report.first_losses["relations"]
    assert json.loads((out / REPORT_FILE).read_text())["steps"] == 40
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(out))
    nlp.initialize()
    assert nlp.get_pipe("encoder").model.transformer.config.num_hidden_layers == 2
    assert nlp("the cat sat")._.trf_data.model_output["last_hidden_state"].shape[-1] == 32


def test_the_general_student_is_closer_to_the_teacher_than_the_layers_it_started_from(general, tiny4, files):
    """The distilled student's last hidden states against the whole teacher's,
    compared with the same two layers cut out and not trained."""
    import copy

    import torch
    from transformers import AutoModel, AutoTokenizer

    from bertflow.compress.encoder_distill import hidden_loss
    from bertflow.compress.student import keep_layers

    tokenizer = AutoTokenizer.from_pretrained(str(tiny4))
    teacher = AutoModel.from_pretrained(str(tiny4)).eval()
    cut = copy.deepcopy(teacher)
    keep_layers(cut, [0, 3])
    student = AutoModel.from_pretrained(str(general[0])).eval()
    batch = tokenizer([t for t, _, _ in TRAIN], padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        target = teacher(**batch).last_hidden_state
        before = float(hidden_loss(target, cut(**batch).last_hidden_state, mask))
        after = float(hidden_loss(target, student(**batch).last_hidden_state, mask))
    assert after < 0.5 * before


def test_a_pipeline_is_a_teacher_too_and_a_spacy_corpus_is_text(teacher, files, tmp_path):
    _, report = bertflow.distill_encoder(str(teacher), None, files / "dev.spacy", layers="0,3", steps=2,
                                         batch_size=2, max_length=16, progress=False)
    assert report.student_layers == 2 and "encoder" in report.teacher


def test_distill_encoder_cli_and_its_one_line_errors(tiny4, files, tmp_path):
    out = tmp_path / "enc"
    result = run_cli(["distill-encoder", tiny4, out, "--text", files / "raw.txt", "--layers", "1", "--steps", "3",
                      "--batch-size", "2", "--max-length", "16", "--report", tmp_path / "r.json"])
    assert result.code == 0, result.stdout
    assert "1-layer encoder" in result.stdout and "--student-encoder" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["student_layers"] == 1
    (out / "NOTES.md").write_text("mine")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("not a text file")
    cases = [
        (["--text", files / "raw.txt"], "E162"),  # OUT is not empty
        (["--text", tmp_path / "missing.txt", "--force"], "E056"),
        (["--text", files / "raw.txt", "--steps", "0", "--force"], "E161"),
        (["--text", files / "raw.txt", "--layers", "9", "--force"], "E104"),
        (["--text", files / "notes.md", "--force"], "E164"),  # not a text format
        (["--text", empty, "--force", "--steps", "1"], "E160"),  # a folder with no .txt/.jsonl file in it
    ]
    for extra, code in cases:
        bad = run_cli(["distill-encoder", tiny4, out, *extra])
        assert bad.code == 1 and code in bad.stderr, (extra, bad.stderr)
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    ok = run_cli(["distill-encoder", tiny4, out, "--text", files / "raw.txt", "--layers", "1", "--steps", "1",
                  "--batch-size", "2", "--force"])
    assert ok.code == 0, ok.stderr
    assert (out / "NOTES.md").read_text() == "mine"  # --force keeps the user's file


def test_a_task_student_starts_from_the_general_student(general, teacher, files, tmp_path):
    result = run_cli(["distill", teacher, tmp_path / "s", "--data", files / "raw.txt", "--student-encoder",
                      general[0], "--steps", "2", "--batch-size", "2"])
    assert result.code == 0, result.stdout
    nlp = spacy.load(tmp_path / "s")
    assert nlp.get_pipe("encoder").model.transformer.config.num_hidden_layers == 2
    assert nlp.meta["bertflow_distilled"]["student_encoder"] == str(general[0])
    assert set(nlp("steve ran to york").cats) == {"POSITIVE", "NEGATIVE"}


# ---- compress ------------------------------------------------------------------------------------------------


def test_frontier_marks_what_nothing_beats():
    rungs = [Rung("a", "", "fp32", 4, docs_per_s=10, loss_points=0.0), Rung("b", "", "int8", 4, docs_per_s=20,
             loss_points=0.5), Rung("c", "", "fp32", 2, docs_per_s=15, loss_points=1.0),
             Rung("d", "", "int8", 2, docs_per_s=40, loss_points=2.0)]
    frontier(rungs)
    assert [r.name for r in rungs if r.frontier] == ["a", "b", "d"]


def test_compress_measures_every_rung_and_saves_the_fastest_within_the_loss(teacher, files, tmp_path):
    out = tmp_path / "fast"
    result = bertflow.compress_pipeline(str(teacher), out, files / "dev.spacy", max_loss=100.0,
                                        data=files / "raw.txt", layers=(1, 2), steps=2, rounds=1,
                                        distill_options={"batch_size": 2}, log=lambda *_: None)
    names = [r["name"] for r in result["rungs"]]
    assert names[:2] == ["teacher", "teacher int8"]
    assert "student 1-layer" in names and "student 1-layer int8" in names
    assert not any("2-layer" in n for n in names)  # the 1-layer student was within the loss
    within = [r for r in result["rungs"] if r["within"]]
    assert result["chosen"] == max(within, key=lambda r: r["docs_per_s"])["name"]
    assert all(r["docs_per_s"] > 0 and {"textcat/cats_score", "ner/ents_f"} <= set(r["scores"])
               for r in result["rungs"])
    nlp = spacy.load(out)
    chosen = next(r for r in result["rungs"] if r["name"] == result["chosen"])
    assert nlp.get_pipe("encoder").model.transformer.config.num_hidden_layers == chosen["layers"]
    assert nlp.get_pipe("encoder").model.attrs["precision"] == chosen["precision"]
    assert nlp.meta["bertflow_compress"]["chosen"] == result["chosen"]
    assert nlp("steve ran to york").cats


def test_max_loss_is_honoured(teacher, files, tmp_path):
    result = bertflow.compress_pipeline(str(teacher), None, files / "dev.spacy", max_loss=0.0, layers=(0,),
                                        rounds=1, log=lambda *_: None)
    for rung in result["rungs"]:
        assert rung["within"] == (rung["loss_points"] <= 0.0)
    assert next(r for r in result["rungs"] if r["name"] == result["chosen"])["loss_points"] <= 0.0


def test_compress_cli_prints_the_table_and_its_errors_are_one_line(teacher, files, tmp_path):
    general_out = tmp_path / "g"
    assert run_cli(["distill-encoder", teacher, general_out, "--text", files / "raw.txt", "--layers", "1",
                    "--steps", "2", "--batch-size", "2"]).code == 0
    result = run_cli(["compress", teacher, tmp_path / "out", "--dev", files / "dev.spacy", "--data",
                      files / "raw.txt", "--student-encoder", general_out, "--steps", "2", "--rounds", "1",
                      "--precision", "int8", "--report", tmp_path / "ladder.json"])
    assert result.code == 0, result.stdout
    table = json.loads((tmp_path / "ladder.json").read_text())
    assert [r["name"] for r in table["rungs"]] == ["teacher", "teacher int8", "student g", "student g int8"]
    for rung in table["rungs"]:
        assert rung["name"] in result.stdout
    cases = [
        (["--layers", "x"], "E163"),
        (["--layers", "3"], "E163"),  # a student to distil and no --data
        (["--max-loss", "-1", "--layers", "0"], "E163"),
        (["--layers", "0", "--precision", "fp8"], "E163"),
        (["--dev", tmp_path / "missing.spacy", "--layers", "0"], "E056"),
    ]
    for extra, code in cases:
        args = ["compress", teacher, tmp_path / "o2", *(["--dev", files / "dev.spacy"] if "--dev" not in extra
                                                         else []), *extra]
        bad = run_cli(args)
        assert bad.code == 1 and code in bad.stderr, (extra, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()
    with pytest.raises(BertflowError, match="E114"):
        bertflow.compress_pipeline(str(teacher), tmp_path / "out", files / "dev.spacy", layers=(0,), rounds=1)


def test_a_second_run_on_a_locked_output_stops_at_once(teacher, files, tmp_path):
    import os
    import socket

    from bertflow.files.outputs import lock_path

    out = tmp_path / "busy"
    lock = lock_path(out)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "command": "bertflow compress"}))
    with pytest.raises(BertflowError, match="E128"):
        bertflow.compress_pipeline(str(teacher), out, files / "dev.spacy", layers=(0,), rounds=1)
    with pytest.raises(BertflowError, match="E128"):
        bertflow.distill_encoder(str(teacher), out, files / "raw.txt", layers=1, steps=1, progress=False)
    assert not out.exists() and lock.exists()


def test_nothing_is_written_beside_a_teacher_that_holds_the_output(tiny4, files):
    before = sorted(p.name for p in tiny4.parent.iterdir())
    with pytest.raises(BertflowError, match="E115"):
        bertflow.distill_encoder(str(tiny4), tiny4 / "student", files / "raw.txt", layers=1, steps=1)
    assert sorted(p.name for p in tiny4.parent.iterdir()) == before and not (tiny4 / "student").exists()


def test_compress_refuses_an_output_that_holds_or_sits_in_the_teacher(teacher, files):
    for out in (teacher / "fast", teacher.parent):
        with pytest.raises(BertflowError, match="E115"):
            bertflow.compress_pipeline(str(teacher), out, files / "dev.spacy", layers=(0,), rounds=1, force=True)
    assert not (teacher / "fast").exists()
