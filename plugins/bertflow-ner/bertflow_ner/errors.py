"""Every user-facing message of bertflow_ner, with its code (NER001, ...): the same mechanism as the
core's catalogue (``bertflow.api.ErrorsWithCodes``), so a user sees and can search each code."""
from bertflow.api import ErrorsWithCodes


class Errors(metaclass=ErrorsWithCodes):
    NER001 = "Unknown wordpieces option {wordpieces!r}: use 'first' or 'mean'."  # architectures.py
    NER002 = "Unknown tag scheme {scheme!r} for {name!r}: use 'BIO' or 'BILUO'."  # component.py
    NER003 = (  # component.py
        'No entity labels for {name!r}: the training examples carry no doc.ents and no labels were '
        "given. Check the corpus (convert it with 'bertflow convert ner'), or set "
        '[initialize.components.{name}.labels].'
    )
    NER004 = (  # component.py
        'Unknown entity label {tag!r} in the doc starting {doc_start!r} (component {name!r}, '
        'labels {labels}). Add it to the labels and re-initialize, or remove it from the data.'
    )
    NER005 = 'Input file not found: {input_path}'  # convert.py
    NER006 = 'Unknown alignment mode {alignment_mode!r}: use strict, contract or expand.'  # convert.py
    NER007 = '{input_path}: no sentences to convert ({n_skipped} skipped as malformed).'  # convert.py
    NER008 = 'Unknown format {file_format!r}: use conll or jsonl.'  # convert.py
    NER009 = '{where}: entity ({start}, {end}, {label!r}) is outside the text (length {length}).'  # convert.py
    NER010 = '{where}: overlapping entities in the doc starting {text!r}: {err}'  # convert.py
    NER011 = (  # convert.py
        '{where}: entity {text!r} ({start}-{end}, {label}) does not fall on token boundaries of '
        'the doc starting {text2!r}. Fix the offsets, or convert with --alignment-mode contract '
        '(shrink to whole tokens) or expand (grow to whole tokens).'
    )
    NER012 = '{where}: entity {text!r} has no whole token inside it; use --alignment-mode expand.'  # convert.py
    NER013 = 'An augmenter\'s {name} must be between 0 and 1, got {value}.'  # augment.py
    NER014 = 'The dev set {path} does not exist: give the .spacy file to vary.'  # stress.py
    NER015 = '{path} is not a .spacy file ({err}): convert it first (bertflow convert ner).'  # stress.py
    NER016 = '{path} has no entities to vary: is it an NER dev set?'  # stress.py
    NER017 = 'Variant files already exist ({paths}): choose another folder, or pass --force to replace them.'  # stress.py
    NER018 = 'bertflow_ner.mention_mix.v1 needs weights (swap, unseen, typos, longer) that are 0 or more, at least one above 0; got {weights}.'  # augment.py
