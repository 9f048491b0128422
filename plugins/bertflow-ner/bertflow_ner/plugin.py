"""bertflow hook implementations for the NER plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="ner",
        factory="bertflow_ner",
        scorer="bertflow.ner_scorer.v1",
        converters={"conll": "bertflow_ner.convert:convert", "jsonl": "bertflow_ner.convert:convert"},
        metrics=("ents_f", "ents_p", "ents_r"),
        description="named entities: doc.ents from BIO/BILUO tags with constrained decoding",
    )]


@hookimpl
def bertflow_cli(app):
    from .stress import add_command

    add_command(app)
