"""bertflow hook implementations for the textcat plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl

from .component import DEFAULT_MODEL_CONFIG
from .convert import convert


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="textcat",
        factory="bertflow_textcat",
        default_config=DEFAULT_MODEL_CONFIG,
        scorer="bertflow.textcat_scorer.v1",
        converters={"tsv": convert, "jsonl": convert},
        metrics=("cats_score", "cats_acc", "cats_macro_f", "cats_macro_auc"),
        description="text classification: doc.cats, exclusive (softmax) or multi-label (sigmoid)",
    )]
