"""Every user-facing error and warning message of the core, in one place.

Tests match on these texts, so keep the wording stable and informative: say
what is wrong, where, and how to fix it. Progress and notices of long work
go to the ``bertflow`` logger (to stderr, as ``[bertflow] ...``; set its level
to WARNING to keep only the warnings).
"""
import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a
    captured or redirected stderr included), not the one at import."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


logger = logging.getLogger("bertflow")
if not logger.handlers:
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter("[bertflow] %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)


class BertflowError(ValueError):
    """Base class for errors raised for user mistakes (bad names, configs, input)."""


class UnknownEncoderError(BertflowError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadWarning(UserWarning):
    """A plugin in the ``bertflow`` entry-point group could not be loaded."""


class PrecisionWarning(UserWarning):
    """A precision switch cannot apply on this device and was ignored."""


def one_line(err: BaseException) -> str:
    """An exception as one line for a message: its type and its message's first line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


class ErrorsWithCodes(type):
    """Shows each message with its code, as spaCy does (``[E042] ...``), so a
    user can search for it and a test can match it. Plugins build their own
    catalogue with it (``bertflow.api.ErrorsWithCodes``), with their own
    prefix, e.g. ``NER001``."""

    def __getattribute__(cls, code: str):
        message = super().__getattribute__(code)
        if code.startswith("_") or not isinstance(message, str):
            return message
        return f"[{code}] {message}"


class Errors(metaclass=ErrorsWithCodes):
    """The core's messages: ``E`` errors and ``W`` warnings, in code order."""

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
        "OUTPUT {output} holds the annotations of {what}, so it can't be resumed: it was {was}, "
        "this run is {now}. Give a new OUTPUT file, or pass --overwrite to start it again."
    )
    E025 = (
        "Refused to load {where}: its weights hold Python objects, not only tensors, and unpickling "
        "them would run code. Re-save the pipeline with nlp.to_disk, or download it from a source you trust."
    )
    E026 = 'OUTPUT {output_path} exists and is not a file: give a file name for the JSONL output.'
    E027 = '{input_path} does not exist or is not a file.'
    E028 = 'Unknown input format {file_format!r} for {input_path}: use one of {formats} (--format).'
    E029 = 'chunk_size must be at least 1, not {chunk_size}.'
    E030 = (
        "--vectors needs --n-process 1: spaCy does not carry a head's doc.vector hooks back from worker "
        'processes, so the vectors would be wrong.'
    )
    E031 = (
        '{path}: the columns {reader_fieldnames} have no {text_field!r} column (use --text-field to name '
        'it).'
    )
    E032 = (
        '--gpu-id {gpu_id} asks for a GPU, but torch sees no CUDA device on this machine (torch '
        '{torch___version__}). Use --gpu-id -1 for the CPU.'
    )
    E033 = (
        "No tasks given. Name at least one, e.g. --tasks textcat,ner; 'bertflow plugins' lists the "
        'installed ones.'
    )
    E034 = (
        'Unknown task(s) {unknown}. Installed tasks: {known}. Install the plugin that provides it (e.g. '
        "pip install bertflow-<task>) and check 'bertflow plugins'."
    )
    E035 = 'A task is named twice in {tasks}: each task gets one component.'
    E036 = (
        '{base} is not a saved spaCy pipeline (no config.cfg). Give the directory written by spacy train '
        '(e.g. training/model-best) or nlp.to_disk.'
    )
    E037 = '{base} already has component(s) {clash}: the new heads need new names.'
    E038 = '{base} has no bertflow_encoder component for the new heads to listen to.'
    E039 = (
        'Tasks {owner!r} and {task!r} need different values for [{key}]: train them in separate configs, '
        'or edit the generated config by hand.'
    )
    E040 = (
        'The task {task_name!r} has no converter for the format {fmt!r} ({input_path}): use --format '
        'with one of {task_converters}.'
    )
    E041 = 'The task {task_name!r} has no converters (its plugin lists none in TaskSpec.converters).'
    E042 = (
        "Unknown task {task!r}. Installed tasks: {tasks} ('bertflow plugins' lists them; install a "
        'plugin for another).'
    )
    E043 = 'Input file not found: {input_path}'
    E044 = 'OUTPUT {output_path} is the input file: give another output file.'
    E045 = 'Unknown option(s) {unknown} for converting {task}. It takes: {options}.'
    E046 = '--{name} {raw!r}: {err}.'
    E047 = (
        'Unexpected argument {word!r}: bertflow convert takes TASK INPUT OUTPUT, then options. {task} '
        'takes: {options}.'
    )
    E048 = 'Unknown option {word!r} for converting {task}. It takes: {options}.'
    E049 = 'The option {word!r} needs a value.'
    E050 = (
        'No corpus path: set [paths.train] / [paths.dev] in the config or pass --paths.train and '
        '--paths.dev to spacy train.'
    )
    E051 = 'Unknown sampling {sampling!r}: use one of {samplings}.'
    E052 = 'temperature must be > 0, got {temperature}.'
    E053 = 'bertflow.MixedCorpus.v1 got no corpus paths: set [paths] for at least one corpus.'
    E055 = 'No examples in {data}.'
    E056 = "{path} does not exist: give .spacy files (convert raw data with 'bertflow convert <task>')."
    E057 = 'Unknown activation {activation!r}. Use one of: {activations}.'
    E058 = (
        'The pipeline {name_or_path!r} needs the component factory {factory!r}, which no installed '
        'package provides: {hint}.'
    )
    E059 = (
        "Can't load the pipeline {name_or_path!r}: {err} Give a directory saved by spacy train / "
        'nlp.to_disk, or an installed package name.'
    )
    E060 = (
        "{value} is damaged and can't be read ({first}). Re-save the pipeline (nlp.to_disk / spacy "
        'train) or download it again.'
    )
    E061 = (
        'bertflow.AdamW.v1: eps must be > 0 and weight_decay, grad_clip >= 0 (got eps={eps}, '
        'weight_decay={weight_decay}, grad_clip={grad_clip}).'
    )
    E062 = 'bertflow.AdamW.v1: {name} must be in [0, 1), not {value}.'
    E063 = (
        '{model} is not a saved pipeline directory (no config.cfg): give the directory written by spacy '
        'train (e.g. training/model-best) or nlp.to_disk.'
    )
    E064 = '{model} has no bertflow_encoder component, so there is no precision to change.'
    E065 = 'precision must be one of {reduced} (fp32 needs no check), not {precision!r}.'
    E066 = '{precision} runs on {devices}; on this CPU it would fall back to fp32: give --gpu-id 0.'
    E067 = 'A reduced-precision package is checked against fp32 on dev data: give --dev DEV.spacy.'
    E068 = 'No head of {model} has annotations in {dev} to score.'
    E069 = (
        "Invalid plugin name {name!r}: use lower-case letters and digits, words joined by '-' or '_', "
        "starting with a letter (e.g. 'intent-detection')."
    )
    E070 = "{target} already exists: choose another name or folder, or pass --force to write the plugin's files over theirs (other files in it are kept)."
    E071 = "{what} must be a function or a 'package.module:function' string, not {value!r}."
    E072 = 'Config not found: {config_path}'
    E073 = 'spacy train failed for lr={lr:g} (exit code {result_returncode}); its message is above.'
    E074 = (
        "Building the {kind} of {path} failed (python -m build). The package directory is there; fix the "
        "problem below and run python -m build in it. Output:\n{tail}"
    )
    E075 = (
        "Component '{name}': learn_rate_scale = {value} is negative. It multiplies the optimizer's learning "
        "rate for this head's own weights: use 1 (the optimizer's rate), more for a fresh head, 0 to freeze it."
    )
    E076 = (
        "Component '{name}': frozen_steps = {value} is negative. It is the number of training updates the "
        "encoder stays frozen for before it trains (0: it trains from the first)."
    )
    E077 = (
        "bertflow.frozen_then_warmup_linear.v1: frozen_steps = {frozen_steps} must be between 0 and "
        "total_steps = {total_steps} (the frozen steps count towards the total)."
    )
    E078 = (
        "trainable_layers: can't find the layer list of {kind} (a ModuleList of config.num_hidden_layers "
        "layers, as BERT-style models have). Use trainable_layers = 0 (train every layer) with this model."
    )
    E079 = "trainable_layers = {n}: the encoder has {total} layers; use 1 to {total}, or 0 for all of them."
    E080 = (
        "The torch.distributed launch variables are not numbers ({err}). Launch data-parallel training with "
        "torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK), or unset them to train in one process."
    )
    E081 = (
        "Rank {rank} read a different global batch from rank 0. Every rank must read the same corpus with "
        "the same seed (training.seed) and the same config: give every machine the same files and settings."
    )
    E082 = (
        "Rank {rank} was asked for GPU {local} (LOCAL_RANK) but this machine has {n} GPU(s). Start at most "
        "one process per GPU (torchrun --nproc-per-node), or train on the CPU (no --gpu-id)."
    )
    E083 = "{options}: only for a sharded engine (--engine ray); the local engine runs one process over one file."
    E084 = "Unknown engine {engine!r} for bertflow annotate. Engines: {known} (plugins add more: bertflow plugins)."
    E085 = "INPUT {input} is not a file, a folder or a glob pattern that matches files."
    E086 = "INPUT {input} holds no file of a known format ({formats}); give --format for other suffixes."
    E087 = "{path} is parquet, which needs pyarrow: pip install 'bertflow[ray]' (or pyarrow)."
    E088 = (
        "OUTPUT {output} must end in .jsonl or .parquet: the sharded engine writes a folder of that name "
        "with one part file per shard in that format (e.g. annotated.jsonl/part-00000-000000.jsonl)."
    )
    E089 = "OUTPUT {output} is a file: the sharded engine writes a folder of part files; give a new name."
    E090 = (
        "OUTPUT {output} holds files that bertflow annotate did not write ({files}); it won't write there. "
        "Give an empty or new folder."
    )
    E091 = (
        "OUTPUT {output} was written for {what}: resuming would mix the two. Give a new OUTPUT, "
        "or --overwrite to start this one again."
    )
    E092 = (
        "The ray engine needs Ray: pip install 'bertflow[ray]' (Ray with Ray Data and pyarrow), or use "
        "--engine local."
    )
    E093 = (
        "Could not connect to Ray at {address!r}: {err}. Give the address of a running cluster "
        "('auto' on a cluster node, 'ray://HEAD:10001' from outside), or no --address to start Ray here."
    )
    E094 = (
        "Bad engine settings: workers {workers} and shard rows {shard_rows} must be at least 1, gpus per "
        "worker {gpus} at least 0, cpus per worker {cpus} more than 0."
    )
    E095 = (
        "{n} workers died during this run; stopping. The shards committed so far are kept in {output}: fix "
        "the cause (memory? a bad node?) and run the same command again to do the rest."
    )
    E096 = (
        "Shard {name} (rows of {source}) failed {tries} times: {err}. The shards committed so far are kept in "
        "{output}; run the same command again to do the rest."
    )
    E097 = (
        "Components {first!r} and {second!r} both asked the encoder to corrupt the input of one training doc "
        "(starting {start!r}): a doc trains one corrupting head. Give each head its own corpus (e.g. a "
        "bertflow.MixedCorpus.v1 entry per head)."
    )
    E098 = (
        "Component {name!r} returned corrupted wordpieces for doc {index} of the batch with {got} ids where "
        "the doc has {expected}: corrupt_inputs must keep each doc's (and its pair's) wordpiece count."
    )
    E099 = (
        "Can't read text corpus {path}: {err}. Give a .txt file (one document per line, or with "
        "paragraphs=true blank-line separated documents), a .jsonl file of {{\"{field}\": ...}} objects, "
        "or a folder of them."
    )
    E100 = (
        "{path}:{line}: {problem} (to skip such lines: skip_bad = true on the corpus reader in a config, "
        "--skip-bad on bertflow distill)"
    )
    E101 = (
        "Text corpus {path} has no text in it{why}. Check the path and the format (.txt lines or .jsonl "
        "objects with a {field!r} field)."
    )
    E102 = (
        "Can't export the encoder of {path}: {why}"
    )
    E103 = (
        "{out} exists and is not empty; export-encoder writes a new model directory. Give a new path or "
        "--force to replace the files it writes there."
    )
    E104 = (
        "A student can't have {k} layers: the teacher's encoder has {n}. Give --student-layers between 1 and {n}."
    )
    E105 = (
        "--student-layers {spec!r} is not a list of teacher layers: give increasing indices below {n} "
        "without repeats (e.g. '{example}'), or a count."
    )
    E106 = (
        "Can't find the transformer blocks of a {cls} to pick a student's layers from (looked for encoder.layer, "
        "transformer.layer, encoder.layers, layers). Give --student NAME, a smaller pre-trained encoder with the "
        "same vocabulary, instead."
    )
    E107 = (
        "bertflow distill needs a teacher pipeline with exactly one bertflow_encoder; this one has {n} ({names})."
    )
    E108 = "Give either --student-layers (the teacher's own layers) or --student (another encoder), not both."
    E109 = (
        "The pipeline keeps the hidden states of the last {keep} layers (the encoder's keep_layers, for heads "
        "that mix or concatenate layers), but the student has only {n}. Keep at least {keep} layers."
    )
    E110 = (
        "The student encoder {name!r} has a different vocabulary ({n} wordpieces) from the teacher's ({m}): "
        "the student must read the same wordpieces as the teacher. Pick an encoder with the teacher's "
        "tokenizer, or --student-layers K to cut the teacher's own encoder."
    )
    E111 = (
        "The student encoder {name!r} is {width} wide but the teacher's heads are sized for {teacher}. Pick an "
        "encoder of width {teacher}, or --student-layers K to cut the teacher's own encoder."
    )
    E112 = "Nothing to distill on: the data has {what}. Check the --data path and its format."
    E113 = (
        "Bad distillation settings: steps={steps}, batch_size={batch_size}, temperature={temperature}, "
        "warmup={warmup}. Steps and batch size must be at least 1, temperature above 0, warmup a fraction in [0, 1)."
    )
    E114 = (
        "{out} exists and is not empty; bertflow writes a new pipeline directory there. Give a new path, "
        "or --force to replace the pipeline's files there (other files in it are kept)."
    )
    E115 = (
        "The student can't be written to {out}: it is, holds or sits inside its teacher {teacher}. Give an output "
        "directory outside the teacher's."
    )
    E116 = "Distillation weights name {names}, which are not heads of the teacher (its heads: {heads})."
    E117 = (
        "No head of the teacher can be distilled (heads: {heads}): none defines get_distill_loss, or every "
        "weight is 0. See docs/plugins.md, 'Distillation'."
    )
    E118 = "{out} is a file: bertflow distill writes a pipeline directory. Give a new or empty directory."
    E119 = (
        "Distilling {name!r} with soft_weight 0 and gold_weight 0 trains on nothing: give the teacher's "
        "targets (soft_weight) or the gold labels (gold_weight) a weight above 0."
    )
    E120 = (
        "bertflow distill can't read {path}: give raw text (.txt, a document per line; .jsonl with a \"text\" "
        "field) or a .spacy file. Convert other formats first, e.g. SQuAD for a QA head: "
        "'bertflow convert qa squad.json pairs.spacy' (the answers are not used)."
    )
    E123 = (
        "Augmentation needs 0 < prob <= 1 and k >= 1 neighbours (got prob={prob}, k={k}). "
        "The default, 0.4, replaces about two words in five."
    )
    E124 = (
        "augment={augment} with gold_weight={gold_weight}: augmented texts have no gold labels (a swapped word can "
        "change them). Distil on the teacher's targets alone (gold_weight 0), or set augment 0 to mix in the gold "
        "labels."
    )
    E125 = "augment={augment}: give the number of variants per text, 0 or more (0: no augmentation)."
    E126 = (
        "hidden_layers={value!r}: give 'last' (the student's last hidden states against the teacher's) or 'all' "
        "(each student layer against the teacher layer it was copied from)."
    )
    E127 = (
        "Refused to load {path}: its component {name!r} holds a {cls} model, whose saved form can run code "
        "while it loads. bertflow loads Hugging Face and plain PyTorch weights only; re-save the component "
        "with one of those, or load the pipeline with spacy.load if you trust its source."
    )
    E128 = (
        "OUTPUT {output} is being written by {owner}: two runs on one OUTPUT would mix their rows. Wait for "
        "it to finish, or give another OUTPUT (the lock is {lock}; delete it only if that run is gone)."
    )
    E129 = (
        "{what} {path} already exists. Give a new path, or pass --force to {how}."
    )
    E130 = "OUTPUT {output_path} is a folder: give the name of a .spacy file to write."
    E132 = (
        "The pipeline {path} can't be built from its config.cfg ({first}). Fix the config (spacy debug config "
        "CONFIG shows what is wrong), or re-save the pipeline with nlp.to_disk / spacy train."
    )
    E133 = (
        "The corpus {path} does not exist. Give the path of a .spacy file (or a folder of them) written by "
        "'bertflow convert' or 'spacy convert', e.g. --paths.train corpus/train.spacy."
    )
    E134 = (
        "The corpus {path} can't be read ({first}). It must be a .spacy file (a DocBin) written by "
        "'bertflow convert' or 'spacy convert'; convert the raw data again."
    )
    E135 = "{path} is a file, and this command writes a folder there: give the path of a new or existing folder."
    E136 = "After --and give TASK INPUT OUTPUT, then options; got {got}."
    E137 = "--lrs must be comma-separated numbers, got {lrs!r}."
    E138 = "--weight {value!r}: give HEAD=NUMBER, e.g. --weight ner=2."
    E139 = (
        "Not packaged: in {precision} a head's metric drops by {drop:.2f} points, more than --max-drop "
        "{max_drop}.\n{tables}\nPackage in fp32, try another precision{int8}, or raise --max-drop if that loss "
        "is acceptable."
    )
    E140 = "bertflow serve needs its optional dependencies ({err}): pip install 'bertflow[serve]'."
    E141 = 'Give exactly one of "text" (one text) or "texts" (a list of texts); got {got}.'
    E142 = '"texts" is empty: send at least one text.'
    E143 = "{n} texts in one request, more than the server's --max-texts {limit}: split the request."
    E144 = "{where}: {n} characters, more than the server's --max-text-chars {limit}: shorten the text."
    E145 = "{where}: a lone surrogate (U+{code:04X}) is not text and can't be encoded as UTF-8: send valid Unicode."
    E146 = (
        "{where} has a question, but no component of this pipeline reads one (doc._.text_pair): use a "
        "pipeline with a QA or cross-encoder head, or leave the question out."
    )
    E147 = "The request body is over the server's --max-body-bytes {limit}: send fewer or shorter texts."
    E148 = "Missing or wrong API key: send the header 'Authorization: Bearer <key>'."
    E149 = "The server is shutting down and takes no new requests: retry on another replica."
    E150 = (
        "--api-key-env {var}: that environment variable is not set or empty. Export the key in it, or leave "
        "--api-key-env out to serve without a key."
    )
    E151 = "{option} must be at least {least}, got {value}."
    E152 = "The request body is not valid JSON: {detail}."
    E153 = "The request body is not UTF-8: {detail}."
    E154 = "Bad request body at {where}: {msg}."
    E155 = "{where} gives both a question and a text_pair: they are the same field, give one."
    E156 = "No endpoint {method} {path}: the server has {endpoints} (OpenAPI page: /docs)."
    E157 = "--engine {engine}: {option} has no effect there ({why})."
    E158 = "Unknown engine {engine!r} for bertflow serve. Engines: {known}."
    E159 = (
        "Can't find the query, key and value projections of a {cls} block (its Linear layers: {names}) for the "
        "attention-relation loss. Give --relation-weight 0 to distil on the hidden states alone."
    )
    E160 = (
        "Nothing to distil the encoder on: {paths} hold no text. Give .txt files (one text per line) or .jsonl "
        "files (a \"text\" field per line), or folders of them."
    )
    E161 = "Bad distill-encoder settings: {bad}."
    E162 = (
        "{out} exists and is not empty; bertflow distill-encoder writes a new encoder directory. Give a new path, "
        "or --force to replace the encoder's files there (other files in it are kept)."
    )
    E163 = "Bad compress settings: {bad}."
    E164 = (
        "{path} is not text bertflow distill-encoder reads: give .txt files (a text per line), .jsonl files (a "
        "\"text\" field per line), folders of them, or a .spacy corpus (its docs' texts)."
    )
    E165 = (
        "bertflow.batch_by_group.v1 got buffer = {buffer}: give 0 (read the whole epoch, then batch) or a "
        "positive number of examples to read between batches (for a streamed corpus, max_epochs = -1)."
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
    W004 = (
        "{n} rows of {path} have a {field!r} field, but no component of the pipeline reads "
        "doc._.text_pair (a question or a second sentence): the field is ignored. Use a pipeline "
        "with a QA or cross-encoder head, or drop the field."
    )
    W005 = (
        "[training.optimizer.learn_rate] warmup_steps = {warmup} is more than [training] max_steps = {max_steps}: "
        "the learning rate would still be rising from 0 when training stops. Set warmup_steps to about a "
        "tenth of max_steps."
    )
    W006 = "Head {name!r} is not distilled: {why}."
    W007 = (
        "Ray is already initialised in this process (connected to {current!r}), so address {address!r} is "
        "not used: the job runs on the cluster this process is connected to. Call ray.shutdown() first to "
        "run it on {address!r}."
    )
    W008 = "{lock} was left by process {pid}, which is gone: taking it over."
