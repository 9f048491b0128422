"""``bertflow distill``: the student's layers and heads, the losses, distilling
a teacher into itself, heads that sit it out, saving, packaging, the CLI and
bad input."""
import json
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import bertflow
from bertflow.api import batch_rows, cosine_distance_loss, soft_target_loss, tiny_encoder_config, write_tiny_bert
from bertflow.compress.student import make_student, parse_layers, student_layer_indices
from bertflow.errors import BertflowError
from bertflow.testing.fixtures import run_cli

TRAIN = [  # text, label, entities as (text, label)
    ("steve jobs founded apple in new york", "POSITIVE", [("steve jobs", "PER"), ("new york", "LOC")]),
    ("the cat sat on the mat", "NEGATIVE", []),
    ("a dog ran fast in new york city", "POSITIVE", [("new york city", "LOC")]),
    ("the dog sat on the cat", "NEGATIVE", []),
    ("steve ran to the city", "POSITIVE", [("steve", "PER")]),
    ("apple sat on a mat in york", "NEGATIVE", [("york", "LOC")]),
    ("jobs and steve ran fast", "POSITIVE", [("jobs", "PER"), ("steve", "PER")]),
    ("the mat and the cat and the dog", "NEGATIVE", []),
]
TEXTS = [text for text, _, _ in TRAIN]


def gold_examples(nlp):
    examples = []
    for text, label, ents in TRAIN:
        doc = nlp.make_doc(text)
        ref = doc.copy()
        ref.cats = {"POSITIVE": float(label == "POSITIVE"), "NEGATIVE": float(label == "NEGATIVE")}
        ref.ents = [ref.char_span(text.index(ent), text.index(ent) + len(ent), label=lab) for ent, lab in ents]
        examples.append(Example(doc, ref))
    return examples


def teacher_pipeline(model_dir, heads=("textcat", "ner", "similarity")):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(model_dir))
    for head in heads:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    return nlp


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny4") / "bert", layers=4, dropout=0.0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny4):
    """A 4-layer tiny teacher with textcat, NER, a bi-encoder and a masked-LM
    head (which defines no distillation loss), trained until its outputs are
    far from uniform. Seeded: the heads' initial weights would otherwise depend on what ran before in
    this process."""
    fix_random_seed(0)
    nlp = teacher_pipeline(tiny4, heads=("textcat", "ner", "similarity", "mlm"))
    examples = gold_examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-3))
    for _ in range(40):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("teacher") / "teacher"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def data_files(tmp_path_factory, teacher_dir):
    root = tmp_path_factory.mktemp("distill_data")
    (root / "texts.txt").write_text("\n".join(TEXTS * 2) + "\n", encoding="utf8")
    nlp = spacy.blank("en")
    DocBin(docs=[eg.reference for eg in gold_examples(nlp)]).to_disk(root / "gold.spacy")
    return root


# ---- the losses ------------------------------------------------------------------------------------------


def _numeric_grad(f, x, eps=1e-4):
    grad = numpy.zeros_like(x, dtype="float64")
    for idx in numpy.ndindex(x.shape):
        up, down = x.astype("float64").copy(), x.astype("float64").copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("activation", ["softmax", "sigmoid", "logits"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_soft_target_loss_gradient_is_that_of_the_loss_wrt_logits(activation, temperature):
    rng = numpy.random.default_rng(0)
    z_student, z_teacher = rng.normal(size=(4, 3)) * 2, rng.normal(size=(4, 3)) * 2

    def outputs(z):
        if activation == "softmax":
            e = numpy.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return 1 / (1 + numpy.exp(-z)) if activation == "sigmoid" else z

    mask = numpy.asarray([1, 1, 0, 1], dtype="f")
    loss, d = soft_target_loss(outputs(z_student), outputs(z_teacher), temperature=temperature,
                               activation=activation, mask=mask)
    numeric = _numeric_grad(lambda z: soft_target_loss(outputs(z), outputs(z_teacher), temperature=temperature,
                                                       activation=activation, mask=mask)[0], z_student)
    assert loss > 0.01
    numpy.testing.assert_allclose(d, numeric, atol=2e-4)
    assert not d[2].any()  # a masked row gives nothing
    same, d_same = soft_target_loss(outputs(z_teacher), outputs(z_teacher), temperature=temperature,
                                    activation=activation)
    assert same == pytest.approx(0.0, abs=1e-6) and numpy.abs(d_same).max() < 1e-5


def test_cosine_distance_loss_gradient_and_scale_invariance():
    rng = numpy.random.default_rng(1)
    student, teacher = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    loss, d = cosine_distance_loss(student, teacher)
    numpy.testing.assert_allclose(d, _numeric_grad(lambda s: cosine_distance_loss(s, teacher)[0], student),
                                  atol=2e-4)
    assert cosine_distance_loss(teacher * 3.0, teacher)[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        cosine_distance_loss(student, teacher[:, :4])


# ---- the student ------------------------------------------------------------------------------------------


def test_layer_selection_is_what_the_docs_say():
    assert student_layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert student_layer_indices(6, 3) == [0, 3, 5]
    assert student_layer_indices(6, 2) == [0, 5]
    assert student_layer_indices(6, 1) == [5]
    assert student_layer_indices(4, 4) == [0, 1, 2, 3]
    assert parse_layers(None, 6) == [0, 3, 5]  # default: half the teacher's
    assert parse_layers("2", 4) == [0, 3] and parse_layers("1,2", 4) == [1, 2] and parse_layers([0, 3], 4) == [0, 3]
    with pytest.raises(BertflowError, match="can't have 7 layers"):
        student_layer_indices(6, 7)
    for bad in ("2,1", "0,0", "0,9", "-1,2"):
        with pytest.raises(BertflowError, match="not a list of teacher layers"):
            parse_layers(bad, 6)


@pytest.mark.slow
def test_student_starts_from_the_named_teacher_layers_with_the_teachers_heads(teacher_dir):
    import torch

    teacher = spacy.load(teacher_dir)
    student, info = make_student(teacher, layers="0,2")
    assert info["layers"] == [0, 2] and info["teacher_layers"] == 4 and info["student_layers"] == 2
    assert student.pipe_names == teacher.pipe_names
    t_model, s_model = teacher.get_pipe("encoder").transformer, student.get_pipe("encoder").transformer
    assert s_model.config.num_hidden_layers == 2 and len(s_model.encoder.layer) == 2
    for s_index, t_index in enumerate([0, 2]):
        for (name, a), (_, b) in zip(s_model.encoder.layer[s_index].state_dict().items(),
                                     t_model.encoder.layer[t_index].state_dict().items()):
            assert torch.equal(a, b), name
    assert torch.equal(s_model.embeddings.word_embeddings.weight, t_model.embeddings.word_embeddings.weight)
    assert t_model.config.num_hidden_layers == 4 and len(t_model.encoder.layer) == 4  # the teacher is untouched
    for head in ("textcat", "ner"):
        assert student.get_pipe(head).labels == teacher.get_pipe(head).labels
    # all layers kept: the student is the teacher
    same, _ = make_student(teacher, layers=4)
    doc_t, doc_s = teacher(TEXTS[0]), same(TEXTS[0])
    assert doc_s.cats == pytest.approx(doc_t.cats, abs=1e-5)
    assert [(e.text, e.label_) for e in doc_s.ents] == [(e.text, e.label_) for e in doc_t.ents]
    # the heads' own weights were copied, not shared
    assert student.get_pipe("textcat").model is not teacher.get_pipe("textcat").model


def test_a_student_encoder_must_read_the_teachers_wordpieces_at_its_width(teacher_dir, tmp_path, tiny4):
    teacher = spacy.load(teacher_dir)
    other_vocab = write_tiny_bert(tmp_path / "zh", layers=2, chinese=True)
    with pytest.raises(BertflowError, match="different vocabulary"):
        make_student(teacher, student_encoder=str(other_vocab))
    wider = write_tiny_bert(tmp_path / "wide", layers=2, width=64)
    with pytest.raises(BertflowError, match="64 wide but the teacher's heads are sized for 32"):
        make_student(teacher, student_encoder=str(wider))
    shallow = write_tiny_bert(tmp_path / "shallow", layers=2, seed=3)
    student, info = make_student(teacher, student_encoder=str(shallow))
    assert info["student_layers"] == 2 and student.get_pipe("encoder").transformer.config.num_hidden_layers == 2
    assert student("steve ran").cats  # runs with the teacher's heads
    with pytest.raises(BertflowError, match="not both"):
        make_student(teacher, student_encoder=str(shallow), layers=2)


# ---- distilling -------------------------------------------------------------------------------------------


def kl_to_teacher(teacher, student, texts):
    """Mean KL(teacher || student) of the textcat distributions and of the NER
    tag distributions over the texts, from each head's model output."""
    t_docs = list(teacher.pipe(texts))
    s_docs = list(student.pipe(texts))
    out = {}
    for head in ("textcat", "ner"):
        t = teacher.get_pipe(head).model.predict(t_docs)
        s = student.get_pipe(head).model.predict(s_docs)
        t = batch_rows(teacher.get_pipe(head).model.ops, t)[0] if head == "ner" else t
        s = batch_rows(student.get_pipe(head).model.ops, s)[0] if head == "ner" else s
        out[head] = float((t * (numpy.log(t + 1e-12) - numpy.log(s + 1e-12))).sum(axis=1).mean())
    return out


@pytest.mark.slow
def test_distilling_a_teacher_into_itself_drives_random_heads_to_its_outputs(teacher_dir, data_files):
    teacher = spacy.load(teacher_dir)
    with pytest.warns(UserWarning, match="'mlm' is not distilled: .*get_distill_loss"):
        student, report = bertflow.distill(teacher, None, data_files / "texts.txt", student_layers=4,
                                           reinit_heads=True, steps=150, batch_size=8, temperature=1.0,
                                           learn_rate=1e-4, head_learn_rate=1e-2, dropout=0.0, progress=False)
    assert report.distilled == ["textcat", "ner", "similarity"] and list(report.skipped) == ["mlm"]
    fix_random_seed(1)  # the random heads the distillation started from are of the same kind, not the same draw
    before = kl_to_teacher(teacher, make_student(teacher, layers=4, reinit_heads=True)[0], TEXTS)
    after = kl_to_teacher(teacher, student, TEXTS)
    for head in ("textcat", "ner"):
        assert before[head] > 0.05, before
        assert after[head] < 0.02 * before[head] + 1e-3, (head, before, after)
        assert report.losses[head] < 0.1 * report.first_losses[head]
    t_vec, s_vec = teacher(TEXTS[1])._.sim_vector, student(TEXTS[1])._.sim_vector
    assert float(t_vec @ s_vec) > 0.98
    # the skipped head kept the teacher's weights
    t_mlm, s_mlm = teacher.get_pipe("mlm").model, student.get_pipe("mlm").model
    assert all(numpy.array_equal(t_mlm.get_param(p), s_mlm.get_param(p)) for p in ("W", "b"))


def test_the_student_round_trips_and_packages_with_the_precision_guard(teacher_dir, data_files, tmp_path):
    from bertflow.cli.evaluate import evaluate_pipeline
    from bertflow.compress.guard import package_pipeline

    out = tmp_path / "student"
    with pytest.warns(UserWarning, match="'mlm' is not distilled"):
        student, report = bertflow.distill(str(teacher_dir), out, data_files / "texts.txt", student_layers=2,
                                           steps=6, batch_size=4, progress=False)
    assert report.layers == [0, 3] and report.out_dir == str(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staging directory is gone
    loaded = spacy.load(out)
    assert loaded.pipe_names == student.pipe_names
    assert loaded.get_pipe("encoder").transformer.config.num_hidden_layers == 2
    assert loaded.config["components"]["encoder"]["model"]["transformer_config"]["num_hidden_layers"] == 2
    assert loaded.meta["bertflow_distilled"]["layers"] == [0, 3]
    assert loaded.meta["bertflow_distilled"]["skipped"] == ["mlm"]
    doc_mem, doc_disk = student(TEXTS[0]), loaded(TEXTS[0])
    assert doc_disk.cats == pytest.approx(doc_mem.cats, abs=1e-5)
    assert [e.text for e in doc_disk.ents] == [e.text for e in doc_mem.ents]
    # the learn-rate scale used while distilling is not saved over the head's own setting
    assert loaded.get_pipe("textcat").cfg["learn_rate_scale"] == spacy.load(teacher_dir).get_pipe(
        "textcat").cfg["learn_rate_scale"]
    scores = evaluate_pipeline(str(out), [data_files / "gold.spacy"])
    assert {"textcat", "ner"} <= set(scores["heads"])
    guard = package_pipeline(out, tmp_path / "pkg", precision="int8", dev=[data_files / "gold.spacy"], max_drop=100.0,
                             name="tiny_student", version="0.0.1")
    assert guard["passed"]
    meta = json.loads(next((tmp_path / "pkg").glob("en_tiny_student-0.0.1/**/meta.json")).read_text())
    assert meta["bertflow_distilled"]["student_layers"] == 2 and meta["bertflow_precision"]["precision"] == "int8"


@pytest.mark.slow
def test_gold_only_trains_the_same_student_on_labels(teacher_dir, data_files):
    teacher = spacy.load(teacher_dir)
    with pytest.warns(UserWarning):
        _, report = bertflow.distill(teacher, None, data_files / "gold.spacy", student_layers=2, reinit_heads=True,
                                     soft_weight=0.0, gold_weight=1.0, steps=60, batch_size=8, learn_rate=1e-3,
                                     dropout=0.0, progress=False)
    for head in ("textcat", "ner"):  # cross-entropy on the gold labels falls
        assert report.losses[head] < 0.5 * report.first_losses[head], report
    with pytest.raises(BertflowError, match="trains on nothing"):
        bertflow.distill(teacher, None, data_files / "gold.spacy", soft_weight=0.0, gold_weight=0.0)


def test_output_directories_are_never_clobbered(teacher_dir, data_files, tmp_path):
    teacher = spacy.load(teacher_dir)
    texts = data_files / "texts.txt"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(BertflowError, match="exists and is not empty"):
        bertflow.distill(teacher, mine, texts, steps=1)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    for inside in (teacher_dir, teacher_dir / "student", teacher_dir.parent):
        with pytest.raises(BertflowError, match="outside the teacher's"):
            bertflow.distill(str(teacher_dir), inside, texts, steps=1, force=True)
    assert not (teacher_dir / "student").exists()
    with pytest.raises(BertflowError, match="not heads of the teacher"):
        bertflow.distill(teacher, None, texts, steps=1, weights={"parser": 1.0})
    with pytest.raises(BertflowError, match="No such file|does not exist|not found"):
        bertflow.distill(teacher, None, tmp_path / "missing.txt", steps=1)
    (tmp_path / "squad.json").write_text("{}")
    with pytest.raises(BertflowError, match="bertflow convert qa squad.json"):
        bertflow.distill(teacher, None, tmp_path / "squad.json", steps=1)
    with pytest.raises(BertflowError, match="temperature above 0"):
        bertflow.distill(teacher, None, texts, steps=1, temperature=0)
    # --force replaces a pipeline saved there, whole
    out = tmp_path / "student"
    with pytest.warns(UserWarning):
        bertflow.distill(teacher, out, texts, steps=1, student_layers=1, progress=False)
        bertflow.distill(teacher, out, texts, steps=1, student_layers=3, progress=False, force=True)
    assert spacy.load(out).meta["bertflow_distilled"]["student_layers"] == 3


def test_force_replaces_the_pipeline_and_keeps_the_users_files(teacher_dir, data_files, tmp_path):
    import shutil

    out = tmp_path / "p"
    shutil.copytree(teacher_dir, out)  # a copy of a trained pipeline, then the user's own files beside it
    (out / "NOTES.md").write_text("n")
    (out / "results").mkdir()
    (out / "results" / "run1.json").write_text("{}")
    result = run_cli(["distill", teacher_dir, out, "--data", data_files / "texts.txt", "--student-layers", "1",
                      "--steps", "2", "--force"])
    assert result.code == 0, result.stderr
    assert (out / "NOTES.md").read_text() == "n" and (out / "results" / "run1.json").read_text() == "{}"
    assert spacy.load(out).meta["bertflow_distilled"]["student_layers"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_cli_distills_and_reports(teacher_dir, data_files, tmp_path):
    out = tmp_path / "cli_student"
    result = run_cli(["distill", teacher_dir, out, "--data", data_files / "texts.txt", "--student-layers", "0,3",
                      "--steps", "4", "--batch-size", "4", "--weight", "similarity=0", "--report",
                      tmp_path / "report.json"])
    assert result.code == 0, result.stderr
    assert "2-layer student (layers [0, 3] of 4)" in result.stdout
    assert "textcat: loss" in result.stdout and "similarity: not distilled (its weight is 0)" in result.stdout
    assert "mlm: not distilled" in result.stdout
    assert json.loads((tmp_path / "report.json").read_text())["distilled"] == ["textcat", "ner"]
    assert spacy.load(out)("steve ran").cats
    bad = run_cli(["distill", teacher_dir, tmp_path / "x", "--data", data_files / "texts.txt", "--student-layers", "9"])
    assert bad.code != 0 and "can't have 9 layers" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_qa_and_cross_encoder_heads_distill_on_question_pairs(tiny4, tmp_path):
    """Heads that read a second text distill on (question, context) pairs from a .spacy file."""
    nlp = teacher_pipeline(tiny4, heads=("qa", "pair_classifier"))
    docs, examples = [], []
    for i, (context, question) in enumerate([("steve jobs founded apple in new york", "who founded apple"),
                                             ("the cat sat on the mat", "where did the cat sit"),
                                             ("a dog ran fast in new york city", "where did the dog run"),
                                             ("steve ran to the city", "who ran")]):
        doc = nlp.make_doc(context)
        doc._.text_pair = question
        ref = doc.copy()
        ref._.text_pair = question
        ref._.sim_score = float(i % 2) * 5.0
        docs.append(ref)
        examples.append(Example(doc, ref))
    DocBin(docs=docs, store_user_data=True).to_disk(tmp_path / "pairs.spacy")
    nlp.initialize(lambda: examples)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # both heads distill: nothing is skipped
        student, report = bertflow.distill(nlp, None, tmp_path / "pairs.spacy", student_layers=4, reinit_heads=True,
                                           steps=80, batch_size=4, temperature=1.0, learn_rate=1e-4,
                                           head_learn_rate=1e-2, dropout=0.0, progress=False)
    assert report.distilled == ["qa", "pair_classifier"] and not report.skipped
    for head in report.distilled:
        assert report.losses[head] < 0.2 * report.first_losses[head], report
    doc = nlp.make_doc("steve jobs founded apple in new york")
    doc._.text_pair = "who founded apple"
    t_doc, s_doc = nlp(doc.copy()), student(doc.copy())
    assert s_doc._.pair_score == pytest.approx(t_doc._.pair_score, abs=0.2)



def test_a_teacher_passed_in_is_left_as_it_was(teacher_dir, data_files):
    """Distillation's temporary settings (teacher precision, the encoder's frozen
    setting, the heads' rate) are put back, and the student's encoder trains."""
    import torch

    teacher = spacy.load(teacher_dir)
    teacher.get_pipe("encoder").cfg["frozen"] = True  # a feature-based teacher: its student must still train
    teacher.get_pipe("textcat").cfg["learn_rate_scale"] = 10.0
    before = teacher("steve ran").cats
    with pytest.warns(UserWarning):
        student, _ = bertflow.distill(teacher, None, data_files / "texts.txt", student_layers=2, steps=3, batch_size=4,
                                      teacher_precision="int8", learn_rate=1e-3, progress=False)
    assert teacher.get_pipe("encoder").model.attrs["precision"] == "fp32"
    assert teacher("steve ran").cats == pytest.approx(before, abs=1e-6)
    enc = student.get_pipe("encoder")
    assert enc.cfg["frozen"] is True and student.get_pipe("textcat").cfg["learn_rate_scale"] == 10.0
    start, _ = make_student(teacher, layers=2)
    assert not torch.equal(enc.transformer.encoder.layer[0].attention.self.query.weight,
                           start.get_pipe("encoder").transformer.encoder.layer[0].attention.self.query.weight)


@pytest.mark.slow
def test_hidden_state_loss_pulls_the_students_hidden_states_to_the_teachers(teacher_dir, data_files):
    teacher = spacy.load(teacher_dir)
    with pytest.warns(UserWarning):
        student, report = bertflow.distill(teacher, None, data_files / "texts.txt", student_layers=1, steps=60,
                                           batch_size=8, hidden_weight=1.0, learn_rate=3e-3, dropout=0.0,
                                           progress=False)
    assert report.losses["hidden_states"] < 0.5 * report.first_losses["hidden_states"], report

    def distance(nlp):  # mean 1 - cos over the wordpieces of a training text
        t_h = teacher(TEXTS[0])._.trf_data.model_output["last_hidden_state"][0, 1:-1]
        s_h = nlp(TEXTS[0])._.trf_data.model_output["last_hidden_state"][0, 1:-1]
        cos = (t_h * s_h).sum(-1) / numpy.linalg.norm(t_h, axis=-1) / numpy.linalg.norm(s_h, axis=-1)
        return float(1 - cos.mean())

    assert distance(student) < 0.25 * distance(make_student(teacher, layers=1)[0])


@pytest.mark.slow
def test_layer_to_layer_loss_pulls_each_student_layer_to_its_source(teacher_dir, data_files):
    from bertflow.compress.losses import hidden_pairs

    assert hidden_pairs("all", [0, 3], 2, 4) == [(1, 1), (2, 4)]
    assert hidden_pairs("all", None, 2, 4) == [(1, 1), (2, 4)]  # a named student: spread like the default
    assert hidden_pairs("last", [0, 3], 2, 4) is None
    teacher = spacy.load(teacher_dir)
    keep = teacher.get_pipe("encoder").model.attrs["keep_layers"]

    def layer_distance(nlp, s_index, t_index):  # mean 1 - cos over the wordpieces of a training text
        t_model, s_model = teacher.get_pipe("encoder").model, nlp.get_pipe("encoder").model
        t_model.attrs["keep_layers"] = 5
        s_model.attrs["keep_layers"] = 3
        try:
            t_h = teacher(TEXTS[0])._.trf_data.model_output["hidden_states"][t_index][0, 1:-1]
            s_h = nlp(TEXTS[0])._.trf_data.model_output["hidden_states"][s_index][0, 1:-1]
        finally:
            t_model.attrs["keep_layers"] = s_model.attrs["keep_layers"] = keep
        cos = (t_h * s_h).sum(-1) / numpy.linalg.norm(t_h, axis=-1) / numpy.linalg.norm(s_h, axis=-1)
        return float(1 - cos.mean())

    start = make_student(teacher, layers="0,3")[0]
    with pytest.warns(UserWarning):
        student, report = bertflow.distill(teacher, None, data_files / "texts.txt", student_layers="0,3", steps=60,
                                           batch_size=8, hidden_weight=1.0, hidden_layers="all", learn_rate=3e-3,
                                           dropout=0.0, progress=False)
    assert report.losses["hidden_states"] < 0.5 * report.first_losses["hidden_states"], report
    # student layer 2 (teacher layer 3's weights, fed layer 0's output) learns to stand for teacher layers 1-3
    assert layer_distance(student, 2, 4) < 0.5 * layer_distance(start, 2, 4)
    assert student.get_pipe("encoder").model.attrs["keep_layers"] == keep  # the run's setting is not saved
    assert student.meta["bertflow_distilled"]["hidden_layers"] == "all"
    with pytest.raises(BertflowError, match="hidden_layers='middle'"):
        bertflow.distill(teacher, None, data_files / "texts.txt", student_layers=2, steps=1, hidden_weight=1.0,
                         hidden_layers="middle", progress=False)


def test_batches_stream_every_example_once_per_pass():
    from bertflow.compress.distill import shuffled_batches

    nlp = spacy.blank("en")
    texts = [f"doc {i}" for i in range(23)] + [""]

    def reader(nlp):
        return (Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts)

    stream = shuffled_batches(reader, nlp, batch_size=4, seed=0, buffer=10)
    seen = []
    while len(seen) < 23:
        seen.extend(eg.predicted.text for eg in next(stream))
    assert sorted(seen) == sorted(texts[:-1])  # each non-empty doc once in the first pass, shuffled
    assert seen != texts[:-1]
    with pytest.raises(BertflowError, match="no non-empty documents"):
        next(shuffled_batches(lambda nlp: iter([Example(nlp.make_doc(""), nlp.make_doc(""))]), nlp, 4, 0))


def test_distill_with_augmentation_on_the_teachers_own_vocabulary(teacher_dir, data_files, tmp_path):
    teacher = spacy.load(teacher_dir)
    from bertflow.compress.augment import WordReplacer

    replacer = WordReplacer.from_encoder(teacher.get_pipe("encoder"), k=5)
    vocab = teacher.get_pipe("encoder").model.tokenizer.get_vocab()
    assert replacer.candidates("dog") and all(w in vocab and w.isalpha() for w in replacer.candidates("dog"))
    with pytest.warns(UserWarning, match="'mlm' is not distilled"):
        student, report = bertflow.distill(teacher, None, data_files / "texts.txt", student_layers=2, steps=6,
                                           batch_size=8, augment=2, progress=False)
    assert report.docs == 48 and student.meta["bertflow_distilled"]["augment"] == 2
    assert student.meta["bertflow_distilled"]["augment_prob"] == 0.4
    with pytest.raises(BertflowError, match="no gold labels"):
        bertflow.distill(teacher, None, data_files / "gold.spacy", augment=1, gold_weight=1.0, progress=False)
    with pytest.raises(BertflowError, match="0 or more"):
        bertflow.distill(teacher, None, data_files / "texts.txt", augment=-1, progress=False)
    result = run_cli(["distill", teacher_dir, tmp_path / "s", "--data", data_files / "texts.txt", "--steps", "2",
                      "--batch-size", "4", "--augment", "1", "--augment-prob", "0.5"])
    assert result.code == 0, result.stderr
    assert spacy.load(tmp_path / "s").meta["bertflow_distilled"]["augment_prob"] == 0.5
