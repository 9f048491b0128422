"""bertflow hooks of the QA plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [
        TaskSpec(
            name="qa",
            factory="bertflow_qa",
            scorer="bertflow.qa_scorer.v1",
            converters={"json": "bertflow_qa.convert:convert"},
            metrics=("qa_f1", "qa_exact"),
            description="extractive QA on (doc._.text_pair question, doc context): doc.spans['answers'], bertflow.ask",
        )
    ]


@hookimpl
def bertflow_functions():
    return {"ask": "bertflow_qa.answering:ask", "ask_many": "bertflow_qa.answering:ask_many"}
