"""Loading a pipeline never runs code or writes files.

Each test crafts a pipeline directory as a hostile author would, loads it the
ways a user does (``spacy.load`` and ``bertflow.files.loading.load_pipeline``), and
checks that it is refused with its message, that nothing was written outside
the test's temp dir, and that the planted code never ran.
"""
import io
import json
import os

import pytest
import spacy
import torch

import bertflow  # noqa: F401
from bertflow.encoder.model import Encoder
from bertflow.encoder.serialization import UnsafeModelError
from bertflow.errors import BertflowError
from bertflow.files.loading import load_pipeline
from bertflow.testing.fixtures import edit_hf_shim_bytes, run_cli, tiny_encoder_config


@pytest.fixture(scope="module")
def saved(tiny_bert_dir, tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir))
    nlp.initialize()
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    nlp.to_disk(path)
    return path


def craft(saved, tmp_path, edit):
    """A copy of the saved pipeline whose encoder bytes ``edit`` rewrote (the
    inner msgpack of the HF shim, as a dict)."""
    import shutil

    target = tmp_path / "crafted"
    shutil.copytree(saved, target)
    edit_hf_shim_bytes(target / "encoder" / "model", edit)
    return target


def load_both_ways(path):
    """The error of loading ``path`` through bertflow and through plain spaCy (same text)."""
    with pytest.raises(BertflowError) as ours:
        load_pipeline(path)
    with pytest.raises(BertflowError) as plain:
        spacy.load(path)
    assert str(ours.value) == str(plain.value)
    return str(ours.value)


def test_saved_pipeline_round_trips(saved):
    nlp = spacy.load(saved)
    doc = nlp("john lives in paris")
    assert doc._.trf_data.model_output["last_hidden_state"].shape[-1] == 32


def test_tokenizer_file_with_absolute_name_is_refused(saved, tmp_path):
    planted = tmp_path / "outside" / "pwned.txt"

    def edit(inner):
        inner["tokenizer"][str(planted)] = b"written by the model"

    message = load_both_ways(craft(saved, tmp_path, edit))
    assert "Refused to load" in message and str(planted) in message and "plain file names" in message
    assert not planted.exists() and not planted.parent.exists()


@pytest.mark.parametrize("name", ["../escape.txt", "sub/vocab.txt", "tokenization_evil.py", ".."])
def test_tokenizer_file_names_that_are_not_plain_are_refused(saved, tmp_path, name):
    message = load_both_ways(craft(saved, tmp_path, lambda inner: inner["tokenizer"].__setitem__(name, b"x")))
    assert repr(name) in message
    assert not (tmp_path / "escape.txt").exists()


def test_trust_remote_code_in_the_tokenizer_kwargs_is_refused(saved, tmp_path):
    marker = tmp_path / "code_ran"
    code = f"open({str(marker)!r}, 'w').write('ran')\n"

    def edit(inner):
        inner["tokenizer"]["kwargs"] = {"use_fast": True, "trust_remote_code": True}
        config = json.loads(inner["tokenizer"]["tokenizer_config.json"])
        config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
        inner["tokenizer"]["tokenizer_config.json"] = json.dumps(config).encode()
        inner["tokenizer"]["evil.txt"] = code.encode()

    message = load_both_ways(craft(saved, tmp_path, edit))
    assert "'trust_remote_code'" in message and "run Python code" in message
    assert not marker.exists()


def test_auto_map_in_the_model_config_is_refused(saved, tmp_path):
    def edit(inner):
        inner["config"]["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}

    assert "'auto_map'" in load_both_ways(craft(saved, tmp_path, edit))


def test_unknown_tokenizer_kwargs_are_refused(saved, tmp_path):
    message = load_both_ways(craft(saved, tmp_path, lambda inner: inner["tokenizer"].__setitem__(
        "kwargs", {"use_fast": True, "cache_dir": "/tmp/elsewhere"})))
    assert "['cache_dir']" in message


def test_pickled_weights_are_loaded_as_tensors_only(saved, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    def edit(inner):
        buffer = io.BytesIO()
        torch.save({"weights": Payload()}, buffer)
        inner["state"] = buffer.getvalue()

    message = load_both_ways(craft(saved, tmp_path, edit))
    assert "hold Python objects, not only tensors" in message
    assert not marker.exists()


def test_remote_code_in_a_config_is_refused(tiny_bert_dir):
    with pytest.raises(UnsafeModelError, match="trust_remote_code"):
        Encoder(str(tiny_bert_dir), tokenizer_config={"trust_remote_code": True})


@pytest.mark.parametrize("size", [0, 100, "half"])
def test_truncated_encoder_file_is_one_error_naming_it(saved, tmp_path, size):
    import shutil

    target = tmp_path / "truncated"
    shutil.copytree(saved, target)
    model = target / "encoder" / "model"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2 if size == "half" else size])
    message = load_both_ways(target)
    assert str(model) in message and "re-save" in message.lower() and "\n" not in message


def test_encoder_model_that_is_a_directory_is_refused(saved, tmp_path, tiny_bert_dir):
    import shutil

    target = tmp_path / "dir_model"
    shutil.copytree(saved, target)
    (target / "encoder" / "model").unlink()
    shutil.copytree(tiny_bert_dir, target / "encoder" / "model")
    assert "not a file" in load_both_ways(target)


@pytest.mark.parametrize("name,garbage", [("meta.json", "{not json"), ("config.cfg", "[nlp\nlang = ")])
def test_garbage_meta_or_config_is_one_line_on_the_cli(saved, tmp_path, name, garbage):
    import shutil

    target = tmp_path / "garbage"
    shutil.copytree(saved, target)
    (target / name).write_text(garbage)
    (tmp_path / "in.txt").write_text("hello\n")
    result = run_cli(["annotate", target, tmp_path / "in.txt", tmp_path / "out.jsonl"])
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(target / name) in lines[0] and "download it again" in lines[0]
    assert not (tmp_path / "out.jsonl").exists()


# ---- every Hugging Face shim, whatever component or architecture the config names --------------------

def _stock_transformer_pipeline(tiny_bert_dir, path):
    """A pipeline with spacy-transformers' own ``transformer`` component, saved to ``path``."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {"@architectures": "spacy-transformers.TransformerModel.v3",
                                                  "name": str(tiny_bert_dir),
                                                  "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1",
                                                                "window": 32, "stride": 24}}})
    nlp.initialize()
    nlp.to_disk(path)
    return path


def _craft_component(path, component, edit):
    edit_hf_shim_bytes(path / component / "model", edit)


def _plant_file(planted):
    return lambda inner: inner["tokenizer"].__setitem__(str(planted), b"written by the model")


def _plant_code(marker):
    def edit(inner):
        inner["tokenizer"]["kwargs"] = {"use_fast": True, "trust_remote_code": True}
        config = json.loads(inner["tokenizer"]["tokenizer_config.json"])
        config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        inner["tokenizer"]["tokenizer_config.json"] = json.dumps(config).encode()
        inner["tokenizer"]["evil.py"] = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    return edit


@pytest.fixture(scope="module")
def stock_saved(tiny_bert_dir, tmp_path_factory):
    return _stock_transformer_pipeline(tiny_bert_dir, tmp_path_factory.mktemp("stock") / "pipeline")


@pytest.fixture(scope="module")
def v3_saved(tiny_bert_dir, tmp_path_factory):
    """A bertflow encoder whose config names spacy-transformers' architecture instead of bertflow's."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(tiny_bert_dir),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}}})
    nlp.initialize()
    path = tmp_path_factory.mktemp("v3") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.mark.parametrize("which,component", [("stock", "transformer"), ("v3", "encoder")])
@pytest.mark.parametrize("command", ["annotate", "check", "evaluate"])
def test_every_hf_shim_is_guarded_whatever_the_config_names(request, tmp_path, which, component, command):
    """A planted absolute tokenizer file name and planted remote code, in a pipeline that bertflow's own
    encoder loader does not read: every bertflow command refuses it in one line, writes nothing, runs nothing."""
    import shutil

    source = request.getfixturevalue(f"{which}_saved")
    planted, marker = tmp_path / "outside" / "PWNED.txt", tmp_path / "code_ran"
    (tmp_path / "in.txt").write_text("hello world\n")
    for edit, expect in ((_plant_file(planted), "plain file names"), (_plant_code(marker), "'trust_remote_code'")):
        target = tmp_path / "crafted"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        _craft_component(target, component, edit)
        args = {"annotate": ["annotate", target, tmp_path / "in.txt", tmp_path / "out.jsonl"],
                "check": ["check", target], "evaluate": ["evaluate", target, tmp_path / "missing.spacy"]}[command]
        result = run_cli(args)
        assert result.code == 1, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0] and str(target / component / "model") in lines[0], result.stderr
        assert not planted.exists() and not planted.parent.exists() and not marker.exists()
        assert not (tmp_path / "out.jsonl").exists()


def test_plain_spacy_load_of_a_bertflow_encoder_is_guarded_whatever_its_architecture(v3_saved, tmp_path):
    import shutil

    target = tmp_path / "crafted"
    shutil.copytree(v3_saved, target)
    planted = tmp_path / "outside" / "PWNED.txt"
    _craft_component(target, "encoder", _plant_file(planted))
    with pytest.raises(BertflowError, match="plain file names"):
        spacy.load(target)
    assert not planted.exists()


def test_remote_code_anywhere_in_the_config_is_refused_before_anything_is_built(stock_saved, tmp_path):
    import shutil

    target = tmp_path / "crafted"
    shutil.copytree(stock_saved, target)
    text = (target / "config.cfg").read_text()
    text = text.replace("[components.transformer.model.tokenizer_config]\n",
                        "[components.transformer.model.tokenizer_config]\ntrust_remote_code = true\n")
    (target / "config.cfg").write_text(text)
    with pytest.raises(UnsafeModelError, match=r"components.transformer.model.tokenizer_config\]: it sets .trust_remote_code"):
        load_pipeline(target)


def test_a_shim_that_can_run_code_is_refused_by_name(stock_saved):
    from thinc.shims import TorchScriptShim

    from bertflow.encoder.serialization import check_shims

    nlp = load_pipeline(stock_saved)
    node = next(n for n in nlp.get_pipe("transformer").model.walk() if n.shims)
    node.shims[0] = TorchScriptShim(None)  # a pipeline loaded for this test only
    with pytest.raises(UnsafeModelError, match="TorchScriptShim"):
        check_shims(nlp, stock_saved)


def test_the_guard_is_put_back_after_loading(saved):
    from spacy_transformers.layers.hf_shim import HFShim

    from bertflow.encoder.serialization import SafeHFShim

    before = HFShim.from_bytes
    load_pipeline(saved)
    assert HFShim.from_bytes is before and before is not SafeHFShim.from_bytes
