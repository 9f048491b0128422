"""bertflow hooks of the multiple-choice plugin (public API only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [TaskSpec(
        name="multiple_choice",
        factory="bertflow_multiple_choice",
        scorer="bertflow_mc.scorer.v1",
        converters={"jsonl": "bertflow_mc.convert:convert"},
        metrics=("mc_acc",),
        config_overrides={"training.batcher": {"@batchers": "bertflow.batch_by_group.v1", "size": 8,
                                                "group_attr": "mc_question"}},
        description="multiple choice (SWAG-style): each (context, candidate) pair scored from [CLS], softmax per question",
    )]
