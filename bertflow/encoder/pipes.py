"""Which components of a loaded pipeline are bertflow encoders, and which
heads listen to each. Light: importing it loads no deep-learning library."""
from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    from spacy.language import Language

ENCODER_FACTORY = "bertflow_encoder"


def encoder_components(nlp: "Language") -> List[str]:
    """The names of a loaded pipeline's ``bertflow_encoder`` components, in pipeline order."""
    return [name for name, _ in nlp.pipeline if nlp.get_pipe_meta(name).factory == ENCODER_FACTORY]


def listening_heads(nlp: "Language") -> Dict[str, str]:
    """Each component that listens to an encoder -> that encoder's name."""
    heads: Dict[str, str] = {}
    for enc in encoder_components(nlp):
        for name in nlp.get_pipe(enc).listener_map:
            heads[name] = enc
    return heads
