"""bertflow-multiple-choice: an out-of-tree bertflow plugin, written only
against ``bertflow.api``. Each (context, candidate) pair goes through the
shared encoder's pair input; a learned vector dotted with [CLS] scores the
candidate; a softmax over a question's candidates picks the answer (the BERT
paper's SWAG setup)."""
from .component import choose, install_extensions

__all__ = ["choose", "install_extensions"]
