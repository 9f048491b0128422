"""``bertflow convert TASK IN OUT``: one command over every task's
converters, and converters that say what is wrong with a bad file instead of
a traceback or a silent change."""
import json

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from bertflow.cli import app, task_alias
from bertflow.data.convert import convert, describe_options, parse_options
from bertflow.errors import BertflowError
from bertflow.testing.fixtures import run_cli


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


@pytest.fixture
def sst(tmp_path):
    src = tmp_path / "sst.tsv"
    src.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    return src


def test_convert_runs_a_tasks_converter_with_its_own_options(sst, tmp_path):
    result = invoke("convert", "textcat", sst, tmp_path / "o.spacy", "--label-map", "0=NEGATIVE,1=POSITIVE")
    assert result.exit_code == 0, result.output
    assert "2 docs" in result.output
    assert [d.cats for d in docs(tmp_path / "o.spacy")] == [{"NEGATIVE": 0.0, "POSITIVE": 1.0},
                                                            {"NEGATIVE": 1.0, "POSITIVE": 0.0}]


def test_the_task_first_form_is_an_alias():
    assert task_alias(["ner", "convert", "a", "b", "--skip-bad"]) == ["convert", "ner", "a", "b", "--skip-bad"]
    assert task_alias(["convert", "ner", "a", "b"]) == ["convert", "ner", "a", "b"]
    assert task_alias(["annotate", "m", "a", "b"]) == ["annotate", "m", "a", "b"]


def test_the_alias_runs_from_the_command_line(sst, tmp_path):
    result = run_cli(["textcat", "convert", sst, tmp_path / "o.spacy", "--label-map", "0=NEGATIVE,1=POSITIVE"])
    assert result.code == 0, result.stderr
    assert len(docs(tmp_path / "o.spacy")) == 2


def test_an_unknown_option_lists_the_tasks_options(sst, tmp_path):
    result = invoke("convert", "textcat", sst, tmp_path / "o.spacy", "--mode", "cross")
    assert result.exit_code == 1
    assert "Unknown option '--mode' for converting textcat" in result.output
    assert "--label-map K=V,K=V" in result.output and "--skip-bad" in result.output


def test_an_unknown_task_lists_the_installed_ones(sst, tmp_path):
    result = invoke("convert", "sentiment", sst, tmp_path / "o.spacy")
    assert result.exit_code == 1 and "Unknown task 'sentiment'" in result.output and "textcat" in result.output


def test_a_format_without_a_converter_names_the_formats(tmp_path):
    src = tmp_path / "data.xml"
    src.write_text("<x/>")
    with pytest.raises(BertflowError, match="no converter for the format 'xml'.*jsonl, tsv"):
        convert("textcat", src, tmp_path / "o.spacy", file_format="xml")
    with pytest.raises(BertflowError, match="Unknown format 'xml'.*tsv, jsonl"):  # the converter's own check
        convert("textcat", src, tmp_path / "o.spacy")


def test_options_are_parsed_by_the_converters_annotations():
    def converter(input_path, output_path, *, file_format=None, skip_bad: bool = False, limit=None,
                  label_map=None, labels=None, n: int = 1):
        pass

    from typing import Dict, List, Optional

    converter.__annotations__.update({"limit": Optional[int], "label_map": Optional[Dict[str, str]],
                                      "labels": Optional[List[str]]})
    got = parse_options(converter, ["--skip-bad", "--limit", "5", "--label-map=a=X,b=Y", "--labels", "X,Y",
                                    "--n", "3"], "t")
    assert got == {"skip_bad": True, "limit": 5, "label_map": {"a": "X", "b": "Y"}, "labels": ["X", "Y"], "n": 3}
    assert parse_options(converter, ["--no-skip-bad"], "t") == {"skip_bad": False}
    with pytest.raises(BertflowError, match="needs a value"):
        parse_options(converter, ["--limit"], "t")
    with pytest.raises(BertflowError, match="--limit 'x'"):
        parse_options(converter, ["--limit", "x"], "t")
    assert "--format" not in describe_options(converter) and "--file-format" not in describe_options(converter)


def test_pair_classifier_converts_cross_encoder_pairs(tmp_path):
    src = tmp_path / "sts.tsv"
    src.write_text("sentence1\tsentence2\tscore\na man walks\ta man is walking\t4.5\n")
    assert invoke("convert", "pair_classifier", src, tmp_path / "o.spacy").exit_code == 0
    (doc,) = docs(tmp_path / "o.spacy")
    assert doc._.text_pair == "a man walks" and doc.text == "a man is walking"


def test_output_that_is_the_input_is_refused(sst):
    before = sst.read_bytes()
    with pytest.raises(BertflowError, match="is the input file"):
        convert("textcat", sst, sst, label_map={"0": "NEGATIVE", "1": "POSITIVE"})
    assert sst.read_bytes() == before


# ---- a label the map does not name ----------------------------------------------------------------

def test_a_label_missing_from_the_label_map_is_an_error_with_its_line(tmp_path):
    src = tmp_path / "sst.tsv"
    src.write_text("a fine film\t1\na dull film\t0\nan odd one\t2\n")
    with pytest.raises(BertflowError, match=r"sst.tsv:3: label\(s\) \['2'\] not in the label map"):
        convert("textcat", src, tmp_path / "o.spacy", label_map={"0": "NEGATIVE", "1": "POSITIVE"})
    report = convert("textcat", src, tmp_path / "o.spacy", label_map={"0": "NEGATIVE", "1": "POSITIVE"},
                     skip_bad=True)
    assert report.n_skipped == 1 and report.labels == ["NEGATIVE", "POSITIVE"]


def test_labels_option_checks_every_row(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"text": "a", "label": "POS"}) + "\n" + json.dumps({"text": "b", "label": "NEU"}) + "\n")
    result = invoke("convert", "textcat", src, tmp_path / "o.spacy", "--labels", "POS,NEG")
    assert result.exit_code == 1 and "d.jsonl:2: unknown label(s) ['NEU']" in result.output
    assert invoke("convert", "textcat", src, tmp_path / "o.spacy", "--labels", "POS,NEU,NEG").exit_code == 0
    assert set(docs(tmp_path / "o.spacy")[0].cats) == {"POS", "NEU", "NEG"}


# ---- skipping a bad CoNLL line skips its sentence -----------------------------------------------------

def test_skip_bad_in_conll_skips_the_whole_sentence(tmp_path):
    src = tmp_path / "ner.txt"
    src.write_text("John B-PER\nlives\nin O\nParis B-LOC\n\nMary B-PER\nsmiled O\n")
    report = convert("ner", src, tmp_path / "o.spacy", skip_bad=True)
    assert report.n_skipped == 1 and report.n_docs == 1
    assert "ner.txt:2" in report.summary()
    assert [d.text.split() for d in docs(tmp_path / "o.spacy")] == [["Mary", "smiled"]]


@pytest.mark.parametrize("task,name,data", [
    ("ner", "junk.txt", b"John B-PER\n\xff\xfe\x00 O\n"),
    ("ner", "junk.jsonl", b'{"text": "a", "entities": []}\n\xff\xfe\n'),
    ("textcat", "junk.tsv", b"a film\tPOS\n\xe9t\xe9\tNEG\n"),
    ("similarity", "junk.tsv", b"sentence1\tsentence2\tscore\n\xe9\tb\t2\n"),
])
def test_binary_junk_is_a_line_numbered_error(tmp_path, task, name, data):
    src = tmp_path / name
    src.write_bytes(data)
    result = invoke("convert", task, src, tmp_path / "o.spacy")
    assert result.exit_code == 1
    assert f"{name}:2: not valid UTF-8" in result.output and "Traceback" not in result.output


def test_binary_squad_is_one_error(tmp_path):
    src = tmp_path / "squad.json"
    src.write_bytes(b'{"data": [\xff]}')
    result = invoke("convert", "qa", src, tmp_path / "o.spacy")
    assert result.exit_code == 1 and "not valid UTF-8" in result.output


def test_invalid_json_is_named_once(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "a\x01b", "label": "X"}\n')
    result = invoke("convert", "textcat", src, tmp_path / "o.spacy")
    assert "bad.jsonl:1: invalid JSON: Invalid control character at (column" in result.output
    assert "at at" not in result.output


def test_several_conversions_in_one_process_with_and(sst, tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\nfine\t1\n")
    result = invoke("convert", "textcat", sst, tmp_path / "a.spacy", "--label-map", "0=NEGATIVE,1=POSITIVE",
                    "--and", "textcat", dev, tmp_path / "b.spacy", "--label-map", "0=NEG,1=POS")
    assert result.exit_code == 0, result.output
    assert [d.cats for d in docs(tmp_path / "b.spacy")] == [{"POS": 1.0}]  # each job its own options
    assert len(docs(tmp_path / "a.spacy")) == 2
    bad = invoke("convert", "textcat", sst, tmp_path / "c.spacy", "--and", "textcat", dev)
    assert bad.exit_code == 1 and "After --and give TASK INPUT OUTPUT" in bad.output
    assert not (tmp_path / "c.spacy").exists()  # nothing ran: every job is checked first
