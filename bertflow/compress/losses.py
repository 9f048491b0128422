"""What the student of ``bertflow distill`` learns from besides the heads'
own losses: the teacher heads' outputs on the same docs, and the cosine
loss between the student's and the teacher's hidden states."""
from typing import Dict, List, Optional, Tuple

from bertflow.compress.student import student_layer_indices


def teacher_outputs(teacher_nlp, run: List[str], heads: List[str], docs: list) -> Tuple[Dict[str, object], list]:
    """The teacher heads' model outputs for copies of ``docs`` (inference, the
    docs the student trains on untouched), and the copies: the components in
    ``run`` (the encoders and anything else that is not a head) annotate the
    copies once, then each head's model predicts on them."""
    copies = [doc.copy() for doc in docs]
    with teacher_nlp.select_pipes(enable=run):
        copies = list(teacher_nlp.pipe(copies, batch_size=max(1, len(copies))))
    outputs = {}
    for name in heads:
        pipe = teacher_nlp.get_pipe(name)
        outputs[name] = pipe.model.predict(pipe.model_input(copies))
    return outputs, copies


HIDDEN = "hidden_states"  # the report's name for the hidden-state loss


class HiddenStateLoss:
    """A cosine loss between the student's and the teacher's hidden states, on
    each doc's own wordpieces (the two tokenize alike). It listens to the
    student's encoder like a head, so its gradient joins the heads' in the one
    backward pass.

    pairs: None compares the last hidden states (DistilBERT's loss); else
        (student layer, teacher layer) indices into the encoders'
        ``hidden_states`` (0 is the embeddings' output), each pair weighted
        equally (the layer-to-layer loss of PKD and TinyBERT).
    """

    def __init__(self, encoder, pairs: Optional[List[Tuple[int, int]]] = None):
        from bertflow.heads.listener import BertflowListener

        self.listener = BertflowListener(encoder.name)
        self.pairs = pairs

    def update(self, docs: list, teacher_docs: list, weight: float) -> float:
        from spacy_transformers.data_classes import TransformerData
        from transformers.utils import ModelOutput

        from bertflow.encoder.windows import wordpiece_positions
        from bertflow.heads.losses import cosine_distance_loss

        outputs, backprop = self.listener.begin_update(docs)
        xp = self.listener.ops.xp
        pairs = self.pairs or [(None, None)]

        def layer(data, index):
            output = data.model_output
            return output["last_hidden_state"] if index is None else output["hidden_states"][index]

        picks: list = []
        student: List[list] = [[] for _ in pairs]
        teacher: List[list] = [[] for _ in pairs]
        for doc, t_doc, data in zip(docs, teacher_docs, outputs):
            hidden = data.model_output.get("last_hidden_state") if data is not None else None
            if hidden is None or not hidden.size or doc._.trf_windows is None:
                picks.append(None)
                continue
            where = wordpiece_positions(doc._.trf_windows)
            t_where = wordpiece_positions(t_doc._.trf_windows)
            rows, pos = xp.asarray(where[:, 0]), xp.asarray(where[:, 1])
            t_rows, t_pos = xp.asarray(t_where[:, 0]), xp.asarray(t_where[:, 1])
            picks.append((rows, pos))
            for j, (s_index, t_index) in enumerate(pairs):
                student[j].append(layer(data, s_index)[rows, pos])
                teacher[j].append(xp.asarray(layer(t_doc._.trf_data, t_index)[t_rows, t_pos]))
        if all(pick is None for pick in picks):
            backprop([])
            return 0.0
        share = weight / len(pairs)
        total, d_flats = 0.0, []
        for s_parts, t_parts in zip(student, teacher):
            loss, d_flat = cosine_distance_loss(xp.concatenate(s_parts), xp.concatenate(t_parts))
            total += share * loss
            d_flats.append(d_flat)
        d_datas, start = [], 0
        for pick, data in zip(picks, outputs):
            if pick is None:
                d_datas.append(TransformerData(wordpieces=data.wordpieces, align=data.align,
                                               model_output=ModelOutput()))
                continue
            n = len(pick[0])
            shape = data.model_output["last_hidden_state"].shape
            if self.pairs is None:
                d_hidden = xp.zeros(shape, dtype="f")
                d_hidden[pick[0], pick[1]] = share * d_flats[0][start: start + n]
                d_output = ModelOutput(last_hidden_state=d_hidden)
            else:
                grads = [xp.zeros(shape, dtype="f") for _ in data.model_output["hidden_states"]]
                for (s_index, _), d_flat in zip(self.pairs, d_flats):
                    grads[s_index][pick[0], pick[1]] += share * d_flat[start: start + n]
                d_output = ModelOutput(hidden_states=grads)
            start += n
            d_datas.append(TransformerData(wordpieces=data.wordpieces, align=data.align, model_output=d_output))
        backprop(d_datas)
        return total


def hidden_pairs(hidden_layers: str, layers: Optional[List[int]], n_student: int,
                 n_teacher: int) -> Optional[List[Tuple[int, int]]]:
    """The (student, teacher) ``hidden_states`` indices the hidden-state loss
    compares: None for "last"; for "all", each student layer against the
    output of the teacher layer it was copied from (a named student encoder:
    against layers spread as ``student_layer_indices`` spreads them).
    Index 0 of ``hidden_states`` is the embeddings, so layer i is i + 1.
    ``distill`` has checked ``hidden_layers`` (E126) before loading anything."""
    if hidden_layers == "last":
        return None
    sources = layers if layers is not None else student_layer_indices(n_teacher, n_student)
    return [(k + 1, source + 1) for k, source in enumerate(sources)]
