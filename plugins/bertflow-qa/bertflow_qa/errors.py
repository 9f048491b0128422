"""Every user-facing message of bertflow_qa, with its code (QA001, ...): the same mechanism as the
core's catalogue (``bertflow.api.ErrorsWithCodes``), so a user sees and can search each code."""
from bertflow.api import ErrorsWithCodes


class Errors(metaclass=ErrorsWithCodes):
    QA001 = (  # answering.py
        'The pipeline has no bertflow_qa component (it has: {nothing}). Train one (projects/qa, or '
        "'bertflow init config --tasks qa') and load that pipeline."
    )
    QA002 = 'The pipeline has several QA components {names}: pass component=NAME.'  # answering.py
    QA003 = 'The question must be non-empty text, got {question!r}.'  # answering.py
    QA004 = 'top_k must be at least 1, got {top_k}.'  # answering.py
    QA005 = '{component!r} is not a bertflow_qa component of this pipeline (QA components: {none}).'  # answering.py
    QA006 = 'The context must be a str or a Doc, got {type_name}.'  # answering.py
    QA007 = (  # architectures.py
        "Unknown wordpieces option {wordpieces!r} for bertflow.QAHead.v1: use 'first' or 'mean'."
    )
    QA008 = (  # component.py
        '{name!r}: top_k and max_answer_len must be at least 1 (got top_k={top_k}, '
        'max_answer_len={max_answer_len}).'
    )
    QA009 = (  # component.py
        '{name!r}: the gold answer {text_start!r} (characters {start_char}-{end_char}) of the '
        'question {text_pair!r} covers no token of the predicted doc. Convert the corpus with '
        "'bertflow convert qa', which aligns answers to tokens."
    )
    QA010 = (  # convert.py
        "{path}: not SQuAD JSON: expected an object with a 'data' list of articles "
        '(data[].paragraphs[].context / qas[]).'
    )
    QA011 = '{input_path} does not exist.'  # convert.py
    QA012 = '{input_path}: no questions to convert ({n_skipped} malformed questions).'  # convert.py
    QA013 = (  # convert.py
        '{path}: not valid UTF-8 (byte 0x{object:02x} at byte offset {start}); re-save the file as '
        'UTF-8.'
    )
    QA014 = '{path}:{lineno}: {err}.'  # convert.py
