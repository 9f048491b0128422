"""bertflow hook implementations for the masked-LM plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="mlm",
        factory="bertflow_mlm",
        scorer="bertflow.mlm_scorer.v1",
        converters={"txt": "bertflow_mlm.convert:convert", "jsonl": "bertflow_mlm.convert:convert"},
        metrics=("mlm_acc", "mlm_loss", "mlm_perplexity", "nsp_acc"),
        description="masked-LM (+ optional next-sentence) continued pre-training of the encoder on raw text",
    )]
