"""The edges a hostile or unlucky user reaches: resume never mixes two models,
one writer per OUTPUT, a file name is never a pattern, ``--overwrite`` and
``--force`` replace only what bertflow wrote, odd encodings, and one line
instead of a traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from bertflow.inference.annotate import annotate
from bertflow.inference.engines import ShardedOutput, input_files
from bertflow.errors import BertflowError
from bertflow.files.outputs import lock_path, output_lock
from bertflow.testing.fixtures import run_cli

sys.path.insert(0, str(Path(__file__).parent))
from test_annotate import build  # noqa: E402


@pytest.fixture(scope="module")
def nlp(tiny_bert_dir):
    return build(tiny_bert_dir, "textcat")


def retrained(nlp, seed: int):
    """The same pipeline (same config) with other weights, as a retraining into the same folder gives."""
    import numpy

    copy = spacy.blank("en").from_config(nlp.config).from_bytes(nlp.to_bytes())
    for node in copy.get_pipe("textcat").model.walk():
        for name in node.param_names:
            if node.has_param(name):
                param = node.get_param(name)
                node.set_param(name, param + numpy.random.RandomState(seed).normal(0, 0.5, param.shape).astype(param.dtype))
    return copy


def test_resume_refuses_a_model_retrained_into_the_same_folder(nlp, tmp_path):
    model, src, out = tmp_path / "mdl", tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("".join(f"text number {i}\n" for i in range(6)))
    nlp.to_disk(model)
    annotate(model, src, out, progress=False)
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(lines[:2]) + b"\n")  # a run killed after two rows
    retrained(nlp, 1).to_disk(model)
    assert (model / "config.cfg").read_text() == nlp.config.to_str()  # nothing but the weights changed
    with pytest.raises(BertflowError, match="another model"):
        annotate(model, src, out, progress=False)
    assert len(out.read_bytes().split(b"\n")) == 3  # the old rows are kept, not mixed with the new model's


def test_a_second_run_on_a_locked_output_is_refused_in_one_line(nlp, tmp_path):
    model, src, out = tmp_path / "mdl", tmp_path / "in.txt", tmp_path / "out.jsonl"
    nlp.to_disk(model)
    src.write_text("a film\n")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(out).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid,
                                              "command": "bertflow annotate"}))
        result = run_cli(["annotate", model, src, out])
        assert result.code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "is being written by bertflow annotate" in lines[0] and str(holder.pid) in lines[0]
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over with one warning, and released at the end
    with pytest.warns(UserWarning, match=f"left by process {holder.pid}, which is gone"):
        report = annotate(model, src, out, progress=False)
    assert report.n_done == 1 and not lock_path(out).exists()


def test_the_lock_is_released_on_error_and_is_not_reentrant_across_runs(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with output_lock(out):
            with pytest.raises(BertflowError, match="is being written by"):
                with output_lock(out):
                    pass
            raise RuntimeError("the run fails")
    assert not lock_path(out).exists()


def test_a_file_name_that_looks_like_a_pattern_is_that_file(tmp_path):
    folder = tmp_path / "br"
    folder.mkdir()
    (folder / "t[1].txt").write_text("right\n")
    (folder / "t1.txt").write_text("WRONG\n")
    assert input_files(folder / "t[1].txt") == [folder / "t[1].txt"]
    assert input_files(folder / "t?.txt") == [folder / "t1.txt"]  # no such path: a pattern


def test_a_glob_does_not_read_a_previous_runs_output(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.jsonl").write_text('{"text": "x"}\n')
    out = tmp_path / "g" / "out.jsonl"
    out.mkdir()
    (out / "part-00000-000000.jsonl").write_text('{"row": 0}\n')
    assert input_files(Path(str(tmp_path / "g" / "**" / "*.jsonl")), output=out) == [tmp_path / "g" / "a.jsonl"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite_never_deletes_another_writers_files(tmp_path, overwrite):
    folder = tmp_path / "x.parquet"
    folder.mkdir()
    (folder / "part-00000-c0.snappy.parquet").write_text("a")
    (folder / "_SUCCESS").touch()
    with pytest.raises(BertflowError, match="did not write"):
        ShardedOutput(folder, {"inputs": [], "model": {}, "options": {}}, overwrite=overwrite)
    assert sorted(p.name for p in folder.iterdir()) == ["_SUCCESS", "part-00000-c0.snappy.parquet"]


def test_overwrite_replaces_only_the_parts_the_manifest_records(tmp_path):
    folder = tmp_path / "out.jsonl"
    first = ShardedOutput(folder, {"inputs": [1], "model": {}, "options": {}})
    (folder / "part-00000-000000.jsonl").write_text("{}\n")
    first.commit("part-00000-000000.jsonl", {"rows": 1, "bytes": 3})
    first.finish()
    ShardedOutput(folder, {"inputs": [2], "model": {}, "options": {}}, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(BertflowError, match=r"did not write \(notes.txt\)"):
        ShardedOutput(folder, {"inputs": [2], "model": {}, "options": {}}, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


def test_init_config_refuses_to_replace_a_config_without_force(tmp_path):
    cfg = tmp_path / "my.cfg"
    cfg.write_text("# hand-edited\n")
    result = run_cli(["init", "config", cfg, "--tasks", "textcat"])
    assert result.code == 1 and len(result.stderr.strip().splitlines()) == 1 and "--force" in result.stderr
    assert cfg.read_text() == "# hand-edited\n"
    assert run_cli(["init", "config", cfg, "--tasks", "textcat", "--force"]).code == 0
    assert "[components.textcat]" in cfg.read_text()


def test_convert_replaces_its_own_output_but_not_an_unrelated_file(tmp_path):
    src = tmp_path / "sst.tsv"
    src.write_text("sentence\tlabel\na good film\t1\na bad film\t0\n")
    out = tmp_path / "train.spacy"
    out.write_text("my notes")
    args = ["convert", "textcat", src, out, "--label-map", "0=NEGATIVE,1=POSITIVE"]
    result = run_cli(args)
    assert result.code == 1 and "already exists" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text() == "my notes"
    assert run_cli(args + ["--force"]).code == 0
    assert run_cli(args).code == 0  # a .spacy file of an earlier conversion: replaced, as a project re-run needs


def test_train_refuses_to_replace_a_trained_pipeline_without_force(tmp_path):
    from bertflow.training.train import train

    (tmp_path / "model-best").mkdir()
    (tmp_path / "model-best" / "meta.json").write_text("{}")
    with pytest.raises(BertflowError, match="--force"):
        train(tmp_path / "config.cfg", tmp_path)
    assert (tmp_path / "model-best" / "meta.json").read_text() == "{}"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_utf16_and_utf32_input_is_decoded_by_its_byte_order_mark(nlp, tmp_path, encoding, suffix):
    from bertflow.inference.engines import read_any_rows  # what the ray engine reads with

    texts = ["hello world", "second line 日本 🙂"]
    body = {".txt": "".join(t + "\n" for t in texts),
            ".jsonl": "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
            ".csv": "text\n" + "".join(t + "\n" for t in texts)}[suffix]
    src, out = tmp_path / f"u{suffix}", tmp_path / "out.jsonl"
    src.write_bytes(body.encode(encoding))
    assert [row[2] for row in read_any_rows(src, suffix[1:], "text", "question", "id")] == texts
    annotate(nlp, src, out, progress=False)
    got = [json.loads(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert [r["text"] for r in got] == texts and not any("error" in r for r in got)


def test_utf16_without_a_byte_order_mark_is_never_annotated_as_garbled_text(nlp, tmp_path):
    src, out = tmp_path / "u.txt", tmp_path / "out.jsonl"
    src.write_bytes("hello world\nsecond line\n".encode("utf-16-le"))
    annotate(nlp, src, out, progress=False)
    got = [json.loads(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert got and all("error" in r and "text" not in r for r in got)
    assert "UTF-16" in got[0]["error"]


@pytest.fixture(scope="module")
def saved(nlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("edges") / "M"
    nlp.to_disk(path)
    doc = nlp.make_doc("a good film")
    doc.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    spacy.tokens.DocBin(docs=[doc]).to_disk(path.parent / "dev.spacy")
    return path


def damaged(saved, tmp_path, how):
    import shutil

    target = tmp_path / how
    shutil.copytree(saved, target)
    if how == "truncated":
        data = (target / "textcat" / "model").read_bytes()
        (target / "textcat" / "model").write_bytes(data[: len(data) // 2])
    elif how == "no_cfg":
        (target / "textcat" / "cfg").unlink()
    elif how == "no_lang":
        text = (target / "config.cfg").read_text()
        (target / "config.cfg").write_text("\n".join(l for l in text.splitlines() if not l.startswith("lang =")))
    return target


def one_line_failure(result, *expected):
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("how,expected", [("truncated", ["textcat/model", "damaged"]),
                                          ("no_cfg", ["textcat/cfg", "missing"]),
                                          ("no_lang", ["can't be built from its config.cfg", "E993"])])
@pytest.mark.parametrize("command", ["evaluate", "check", "annotate", "package"])
def test_a_damaged_pipeline_is_one_line_on_every_command(saved, tmp_path, how, expected, command):
    """A head that cannot load its files is a load error: never a traceback, never exit 0 with 0.0 metrics
    or rows without the head's output."""
    model = damaged(saved, tmp_path, how)
    (tmp_path / "in.txt").write_text("a film\n")
    args = {"evaluate": ["evaluate", model, saved.parent / "dev.spacy"], "check": ["check", model],
            "annotate": ["annotate", model, tmp_path / "in.txt", tmp_path / "out.jsonl"],
            "package": ["package", model, tmp_path / "pkg"]}[command]
    one_line_failure(run_cli(args), *expected)
    assert not (tmp_path / "out.jsonl").exists()


def test_training_errors_are_one_line_and_a_whole_number_dropout_trains(saved, tiny_bert_dir, tmp_path):
    cfg, dev = tmp_path / "c.cfg", saved.parent / "dev.spacy"
    assert run_cli(["init", "config", cfg, "--tasks", "textcat", "--encoder", tiny_bert_dir, "--max-steps", "2"]).code == 0
    one_line_failure(run_cli(["train", cfg, "--paths.train", tmp_path / "missing.spacy", "--paths.dev", dev]),
                     "missing.spacy does not exist")
    result = run_cli(["train", cfg, "--output", tmp_path / "out", "--paths.train", dev, "--paths.dev", dev,
                      "--training.dropout", "0", "--training.optimizer.learn_rate.warmup_steps", "1"])
    assert result.code == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "model-last" / "meta.json").exists()


def test_distill_on_a_file_that_is_not_a_docbin_is_one_line(saved, tmp_path):
    (tmp_path / "garbage.spacy").write_text("garbage\n")
    one_line_failure(run_cli(["distill", saved, tmp_path / "S", "--data", tmp_path / "garbage.spacy", "--steps", "1"]),
                     "garbage.spacy can't be read", "E1014")
    assert not (tmp_path / "S").exists()


def test_an_unexpected_error_is_one_line_and_the_debug_switch_shows_the_traceback(monkeypatch, tmp_path):
    from bertflow.files import loading

    def broken(*args, **kwargs):
        raise KeyError("a bug somewhere deep")

    monkeypatch.setattr(loading, "load_pipeline", broken)
    (tmp_path / "M").mkdir()
    result = run_cli(["evaluate", tmp_path / "M", tmp_path / "dev.spacy"])
    one_line_failure(result, "KeyError", "BERTFLOW_DEBUG=1")
    monkeypatch.setenv("BERTFLOW_DEBUG", "1")
    result = run_cli(["evaluate", tmp_path / "M", tmp_path / "dev.spacy"])
    assert result.code == 1 and "Traceback" in result.stderr
