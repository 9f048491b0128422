"""load_pipeline: a pipeline whose plugin is missing says what to install."""
import pytest
import spacy

from bertflow.errors import BertflowError
from bertflow.files.loading import load_pipeline


def save_with_factory(path, factory):
    nlp = spacy.blank("en")
    nlp.to_disk(path)
    cfg = (path / "config.cfg").read_text().replace("pipeline = []", 'pipeline = ["head"]')
    (path / "config.cfg").write_text(cfg + f'\n[components.head]\nfactory = "{factory}"\n')
    return path


def test_missing_bertflow_plugin_names_the_package(tmp_path):
    path = save_with_factory(tmp_path / "p", "bertflow_sentiment")
    with pytest.raises(BertflowError, match=r"needs the component factory 'bertflow_sentiment'.*pip install bertflow-sentiment"):
        load_pipeline(path)


def test_missing_other_factory_and_missing_model(tmp_path):
    path = save_with_factory(tmp_path / "p", "my_company_head")
    with pytest.raises(BertflowError, match="install the package that registers this spaCy factory"):
        load_pipeline(path)
    with pytest.raises(BertflowError, match="Can't load the pipeline"):
        load_pipeline(tmp_path / "nowhere")
