"""bertflow-qa: extractive question answering on the shared encoder
(``bertflow_qa`` component, ``bertflow.ask``, SQuAD converter and scorer).

The names below are imported on first use, so loading the plugin (its entry
point is ``bertflow_qa.plugin``) imports no deep-learning library.
"""
import importlib

_WHERE = {"Answer": ".answering", "ask": ".answering", "ask_many": ".answering",
          "install_extensions": ".extensions"}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'bertflow_qa' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
