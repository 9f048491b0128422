"""Doc extensions of the similarity plugin.

- ``doc._.sim_group`` (str): on training docs, the id shared by the two
  sentences of a pair (the bi-encoder learns from pairs in one batch);
- ``doc._.sim_score`` (float): the pair's gold score (e.g. STS-B's 0-5), on
  reference docs; for the cross-encoder the doc *is* the pair (``doc._.text_pair``
  + the doc's text);
- ``doc._.sim_vector`` (array): the bi-encoder's L2-normalised embedding;
- ``doc._.pair_score`` (float): the cross-encoder's predicted score.
"""
from spacy.tokens import Doc

EXTENSIONS = ("sim_group", "sim_score", "sim_vector", "pair_score")


def install_extensions() -> None:
    for name in EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
