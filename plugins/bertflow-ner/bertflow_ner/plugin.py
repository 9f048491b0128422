"""bertflow hook implementations for the NER plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl

from .component import DEFAULT_MODEL_CONFIG
from .convert import convert


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="ner",
        factory="bertflow_ner",
        default_config=DEFAULT_MODEL_CONFIG,
        scorer="bertflow.ner_scorer.v1",
        converters={"conll": convert, "jsonl": convert},
        metrics=("ents_f", "ents_p", "ents_r"),
        description="named entities: doc.ents from BIO/BILUO tags with constrained decoding",
    )]
