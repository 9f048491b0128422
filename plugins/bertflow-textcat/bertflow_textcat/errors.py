"""Every user-facing message of bertflow_textcat, with its code (TC001, ...): the same mechanism as the
core's catalogue (``bertflow.api.ErrorsWithCodes``), so a user sees and can search each code."""
from bertflow.api import ErrorsWithCodes


class Errors(metaclass=ErrorsWithCodes):
    TC001 = (  # component.py
        "Can't add label {label!r} to {name!r}: the head is already initialized with labels "
        '{labels}. Re-initialize it (nlp.initialize) with the full label set.'
    )
    TC002 = (  # component.py
        'No labels for {name!r}: the training examples carry no doc.cats and no labels were given. '
        "Check the corpus (convert it with 'bertflow convert textcat'), or set "
        '[initialize.components.{name}.labels].'
    )
    TC003 = (  # component.py
        '{name!r} has exclusive classes but only one label {labels}: it needs at least two, or set '
        'exclusive_classes = false for a multi-label head.'
    )
    TC004 = (  # component.py
        'Unknown label {label!r} in the gold cats of the doc starting {doc_start!r} (component '
        '{name!r}, labels {labels}). Add it to the labels and re-initialize '
        '([initialize.components.{name}.labels]), or remove it from the data.'
    )
    TC005 = 'Input file not found: {input_path}'  # convert.py
    TC006 = 'Unknown format {file_format!r} for {input_path}: use one of {READERS} (or --format).'  # convert.py
    TC007 = '{input_path}: no valid rows to convert ({n_skipped} malformed).'  # convert.py
