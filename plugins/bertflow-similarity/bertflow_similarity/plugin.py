"""bertflow hooks of the similarity plugin (public hooks only)."""
from bertflow.api import TaskSpec, hookimpl


@hookimpl
def bertflow_tasks():
    return [
        TaskSpec(
            name="similarity",
            factory="bertflow_similarity",
            scorer="bertflow.similarity_scorer.v1",
            converters={"tsv": "bertflow_similarity.convert:convert", "jsonl": "bertflow_similarity.convert:convert"},
            metrics=("sim_spearman", "sim_pearson"),
            config_overrides={"training.batcher": {"@batchers": "bertflow.batch_by_group.v1", "size": 16,
                                                   "group_attr": "sim_group"}},
            description="sentence embeddings (bi-encoder): doc.similarity, doc.vector, bertflow.search",
        ),
        TaskSpec(
            name="pair_classifier",
            factory="bertflow_pair_classifier",
            scorer="bertflow.pair_scorer.v1",
            converters={"tsv": "bertflow_similarity.convert:convert_cross",
                        "jsonl": "bertflow_similarity.convert:convert_cross"},
            metrics=("pair_spearman", "pair_pearson", "pair_acc", "pair_macro_f"),
            description="cross-encoder on (doc._.text_pair, doc): a 0-5 score or pair labels, bertflow.score_pairs",
        ),
    ]


@hookimpl
def bertflow_functions():
    return {"search": "bertflow_similarity.retrieval:search",
            "score_pairs": "bertflow_similarity.retrieval:score_pairs"}


@hookimpl
def bertflow_serve_endpoints(nlp):
    from .serving import endpoints

    return endpoints(nlp)
