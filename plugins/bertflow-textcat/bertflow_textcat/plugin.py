"""bertflow hook implementations for the textcat plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="textcat",
        factory="bertflow_textcat",
        scorer="bertflow.textcat_scorer.v1",
        converters={"tsv": "bertflow_textcat.convert:convert", "jsonl": "bertflow_textcat.convert:convert"},
        metrics=("cats_score", "cats_acc", "cats_macro_f", "cats_macro_auc"),
        description="text classification: doc.cats, exclusive (softmax) or multi-label (sigmoid)",
    )]
