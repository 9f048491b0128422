"""Every user-facing message of bertflow_similarity, with its code (SIM001, ...): the same mechanism as the
core's catalogue (``bertflow.api.ErrorsWithCodes``), so a user sees and can search each code."""
from bertflow.api import ErrorsWithCodes


class Errors(metaclass=ErrorsWithCodes):
    SIM001 = "Unknown mode {mode!r} for the pair classifier: use 'regression' or 'classification'."  # architectures.py
    SIM002 = (  # component.py
        'No embedding for {a!r} or {b!r}: both must come from a pipeline with a '
        'bertflow_similarity component (nlp(text)).'
    )
    SIM003 = (  # component.py
        '{name!r} has no copy of the untrained encoder: it exists from initialize with '
        'zero_shot_guard = true, and is saved only when it is the one in use.'
    )
    SIM004 = (  # component.py
        "{name!r} uses the untrained encoder's embedding, but its bytes hold no copy of it: save "
        'the pipeline again with this version of bertflow.'
    )
    SIM005 = (  # component.py
        "{name!r} uses the untrained encoder's embedding, but {copy_path} is missing: copy the "
        'whole pipeline directory, or retrain it.'
    )
    SIM006 = (  # component.py
        '{name!r} has zero_shot_guard = true: initialize it through the pipeline (nlp.initialize), '
        'which gives it the encoder to copy.'
    )
    SIM007 = (  # component.py
        '{name!r} in classification mode needs at least two labels, found {labels}: check the '
        'corpus (doc.cats) or set its labels.'
    )
    SIM008 = (  # component.py
        'Unknown label {label!r} for {name!r} (labels {labels}) in the doc starting {doc_start!r}: '
        're-initialize with it.'
    )
    SIM009 = '{path}:1: {problem}'  # convert.py
    SIM010 = "Unknown mode {mode!r}: use 'bi' (bi-encoder) or 'cross' (cross-encoder)."  # convert.py
    SIM011 = '{input_path} does not exist.'  # convert.py
    SIM012 = 'Unknown format {file_format!r} for {input_path}: use tsv (GLUE STS-B) or jsonl.'  # convert.py
    SIM013 = '{input_path}: no pairs to convert ({n_skipped} malformed rows).'  # convert.py
    SIM014 = '{path}:1: expected a GLUE header with sentence1, sentence2 and score columns, got {header}'  # convert.py
    SIM015 = (  # retrieval.py
        "The pipeline has no {factory} component. Add one (nlp.add_pipe('{factory}') after the "
        'bertflow_encoder, or bertflow init config --tasks ...) and load or train it.'
    )
    SIM016 = 'top_k must be at least 1, got {top_k}.'  # retrieval.py
    SIM017 = (  # reference.py
        "{name!r} has no encoder to copy: it listens to none in this pipeline (heads listening: {heads}). "
        "Add it after a bertflow_encoder and initialize the pipeline (nlp.initialize / spacy train)."
    )
    SIM018 = (  # reference.py
        "{where} is not a saved encoder copy ({err}). Re-save the pipeline with this version of bertflow, "
        "or retrain it."
    )
    SIM019 = '{where}: expected {what}.'  # serving.py
