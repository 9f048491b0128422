"""Every user-facing message of bertflow_mlm, with its code (MLM001, ...): the same mechanism as the
core's catalogue (``bertflow.api.ErrorsWithCodes``), so a user sees and can search each code."""
from bertflow.api import ErrorsWithCodes


class Errors(metaclass=ErrorsWithCodes):
    MLM001 = (  # component.py
        '{name!r} is not connected to a bertflow_encoder: add the encoder to the pipeline before '
        "it (nlp.add_pipe('bertflow_encoder') first); the masked-LM decoder is the encoder's word "
        'embeddings.'
    )
    MLM002 = 'mask_probability must be in (0, 1], got {probability}: BERT uses 0.15.'  # masking.py
    MLM003 = (  # masking.py
        'mask_token_rate ({mask_rate}) and random_token_rate ({random_rate}) must be >= 0 and sum '
        'to at most 1 (the rest keep their wordpiece); BERT uses 0.8 and 0.1.'
    )
    MLM004 = (  # masking.py
        "The encoder's tokenizer ({type_name}) has no mask token: a masked-LM head needs a "
        'BERT-style vocabulary with [MASK].'
    )
