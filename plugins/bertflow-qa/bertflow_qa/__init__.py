"""bertflow-qa: extractive question answering on the shared encoder
(``bertflow_qa`` component, ``bertflow.ask``, SQuAD converter and scorer)."""
from .ask import Answer, ask, ask_many
from .extensions import install_extensions

install_extensions()

__all__ = ["Answer", "ask", "ask_many", "install_extensions"]
