"""Doc extensions of the QA plugin.

- ``doc._.qa_top_k`` (Optional[int]): how many answers the QA head writes for
  this doc; None uses the component's ``top_k``. ``bertflow.ask`` sets it.

The question itself is the encoder's pair input, ``doc._.text_pair``; the
answers go to ``doc.spans["answers"]`` (the key is the component's
``spans_key``).
"""
from spacy.tokens import Doc

EXTENSIONS = ("qa_top_k",)


def install_extensions() -> None:
    for name in EXTENSIONS:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
