"""SQuAD v1.1 extractive QA, two systems side by side in one run, same encoder
(minilm-l6), training questions, steps, batch and lr schedule:

  (1) bertflow: encoder + bertflow_qa (start/end head over the context's
      tokens, question in every window, max-context windows), spacy train with
      projects/qa/configs/qa.cfg; answered through ``bertflow.ask_many``;
  (2) a plain Hugging Face AutoModelForQuestionAnswering loop with the standard
      preprocessing (question + context, truncation of the context only,
      max_length 384, doc_stride 128, answers outside a feature point at
      [CLS]) and the standard post-processing (n-best 20 starts x ends per
      feature, answers of at most 30 wordpieces inside the context, best
      start + end logit over the question's features).

Both are scored on the full dev.json with the same SQuAD EM/F1 code
(official normalisation, max over the reference answers); speed is
questions/s over it (tokenisation included).

    python benchmarks/qa_squad.py --data ../shared/data/squad --steps 406

Writes its section of benchmarks/BENCHMARKS.md.
"""
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import benchmark_parser, hf_finetune, machine, spacy_train_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH, DOC_STRIDE, N_BEST, MAX_ANSWER = 384, 128, 20, 30


def read_squad(path: Path, limit: int = 0):
    """[(id, question, context, [(answer text, answer_start)])] in file order."""
    rows = []
    for article in json.loads(path.read_text(encoding="utf8"))["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append((qa["id"], qa["question"], para["context"],
                             [(a["text"], a["answer_start"]) for a in qa["answers"]]))
    return rows[:limit] if limit else rows


def write_squad(rows, path: Path) -> None:
    data = [{"title": r[0], "paragraphs": [{"context": r[2], "qas": [
        {"id": r[0], "question": r[1], "answers": [{"text": t, "answer_start": s} for t, s in r[3]]}]}]} for r in rows]
    path.write_text(json.dumps({"version": "1.1", "data": data}))


def run_bertflow(args, train, dev, workdir: Path, mixed_precision: bool = False):
    import spacy

    import bertflow
    from bertflow_qa.convert import convert

    workdir.mkdir(parents=True, exist_ok=True)
    write_squad(train, workdir / "train.json")
    # spacy train scores a small dev sample at the start and the end; the full dev is scored below
    write_squad(dev[:200], workdir / "dev_sample.json")
    convert(workdir / "train.json", workdir / "train.spacy")
    convert(workdir / "dev_sample.json", workdir / "dev.spacy")
    overrides = {"paths.train": str(workdir / "train.spacy"), "paths.dev": str(workdir / "dev.spacy"),
                 # "bertflow-mixed": bf16 autocast training on a CPU with native bf16 (fp16 on a GPU)
                 "components.encoder.model.mixed_precision": mixed_precision}
    train_s = spacy_train_timed(ROOT / "projects" / "qa" / "configs" / "qa.cfg", workdir / "bertflow", args, overrides)
    nlp = spacy.load(workdir / "bertflow" / "model-last")
    if args.gpu_id < 0:
        torch.set_num_threads(torch.get_num_threads())
    start = time.perf_counter()
    answers = list(bertflow.ask_many(nlp, ((q, c) for _, q, c, _ in dev), batch_size=args.eval_batch))
    infer_s = time.perf_counter() - start
    return [a[0].text if a else "" for a in answers], train_s, infer_s


def hf_train_features(tok, rows):
    """Standard HF SQuAD training features: one per window of each question;
    start/end wordpiece positions of the (first) answer, [CLS] when the answer
    is not wholly inside the window."""
    enc = tok([r[1] for r in rows], [r[2] for r in rows], truncation="only_second", max_length=MAX_LENGTH,
              stride=DOC_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True)
    feats = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        row = rows[enc["overflow_to_sample_mapping"][i]]
        text, a_start = row[3][0]
        a_end = a_start + len(text)
        seq = enc.sequence_ids(i)
        ctx = [k for k, s in enumerate(seq) if s == 1]
        start_pos = end_pos = 0
        if offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
            start_pos = next(k for k in ctx if offsets[k][1] > a_start)
            end_pos = next(k for k in reversed(ctx) if offsets[k][0] < a_end)
        feats.append({"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                      "start_positions": start_pos, "end_positions": end_pos})
    return feats


def collate(feats):
    width = max(len(f["input_ids"]) for f in feats)
    batch = {key: torch.zeros((len(feats), width), dtype=torch.long)
             for key in ("input_ids", "token_type_ids", "attention_mask")}
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(f["input_ids"])
        batch["token_type_ids"][i, :n] = torch.tensor(f["token_type_ids"])
        batch["attention_mask"][i, :n] = 1
    if "start_positions" in feats[0]:
        batch["start_positions"] = torch.tensor([f["start_positions"] for f in feats])
        batch["end_positions"] = torch.tensor([f["end_positions"] for f in feats])
    from transformers import BatchEncoding
    return BatchEncoding(batch)


def hf_predict(model, tok, rows, eval_batch, device):
    """Answer texts: the best start + end logit over every feature of a question."""
    best = [(-numpy.inf, "") for _ in rows]
    for i in range(0, len(rows), eval_batch):
        chunk = rows[i: i + eval_batch]
        enc = tok([r[1] for r in chunk], [r[2] for r in chunk], truncation="only_second", max_length=MAX_LENGTH,
                  stride=DOC_STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True)
        feats = [{"input_ids": ids, "token_type_ids": tt} for ids, tt in zip(enc["input_ids"], enc["token_type_ids"])]
        with torch.inference_mode():
            out = model(**collate(feats).to(device))
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for f, offsets in enumerate(enc["offset_mapping"]):
            q = i + enc["overflow_to_sample_mapping"][f]
            context = rows[q][2]
            ctx = numpy.asarray([s == 1 for s in enc.sequence_ids(f)] + [False] * (starts.shape[1] - len(offsets)))
            s_log, e_log = numpy.where(ctx, starts[f], -numpy.inf), numpy.where(ctx, ends[f], -numpy.inf)
            for s in numpy.argsort(s_log)[::-1][:N_BEST]:
                for e in numpy.argsort(e_log)[::-1][:N_BEST]:
                    if not ctx[s] or not ctx[e] or e < s or e - s + 1 > MAX_ANSWER:
                        continue
                    score = s_log[s] + e_log[e]
                    if score > best[q][0]:
                        best[q] = (score, context[offsets[s][0]: offsets[e][1]])
    return [text for _, text in best]


def run_hf(args, train, dev):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from bertflow.encoder.names import resolve_encoder

    torch.manual_seed(args.seed)
    path = resolve_encoder(args.encoder)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    device = torch.device("cuda" if args.gpu_id >= 0 else "cpu")
    model.to(device)
    feats = hf_train_features(tok, train)
    train_s = hf_finetune(model, feats, collate, args)
    start = time.perf_counter()
    preds = hf_predict(model, tok, dev, args.eval_batch, device)
    return preds, train_s, time.perf_counter() - start, len(feats)


def main():
    parser = benchmark_parser(__doc__, "squad", batch=32, lr=1e-4)
    parser.add_argument("--steps", type=int, default=406, help="default: 3 epochs of the 4,330 train questions")
    parser.add_argument("--systems", default="bertflow,hf",
                        help="bertflow (fp32 training), bertflow-mixed (mixed_precision: bf16 autocast on a CPU "
                             "with native bf16), hf")
    parser.add_argument("--section", default="qa-squad", help="the BENCHMARKS.md section to write")
    args = parser.parse_args()

    from bertflow_qa.scorer import squad_scores

    train = read_squad(args.data / "train.json", args.train_limit)
    dev = read_squad(args.data / "dev.json", args.dev_limit)
    random.Random(args.seed).shuffle(train)
    golds = [[t for t, _ in r[3]] for r in dev]
    results, n_feats = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems.split(","):
            if system == "hf":
                preds, train_s, infer_s, n_feats = run_hf(args, train, dev)
            else:
                preds, train_s, infer_s = run_bertflow(args, train, dev, Path(tmp) / system,
                                                       mixed_precision=system == "bertflow-mixed")
            scores = squad_scores(preds, golds)
            results[system] = {"em": 100 * scores["qa_exact"], "f1": 100 * scores["qa_f1"], "train_s": train_s,
                               "q_per_s": len(dev) / infer_s}
            print(json.dumps({system: results[system]}), flush=True)
    epochs = args.steps * args.batch / len(train)
    names = {"bertflow": "bertflow (encoder + bertflow_qa, spacy train; bertflow.ask_many)",
             "bertflow-mixed": "bertflow, mixed_precision = true (bf16 autocast training where the CPU has it)",
             "hf": "HF AutoModelForQuestionAnswering, plain torch loop, standard pre/post-processing"}
    rows = "\n".join(f"| {names[s]} | {r['em']:.2f} | {r['f1']:.2f} | {r['train_s']:.0f} | {r['q_per_s']:.1f} |"
                     for s, r in results.items())
    feats = f" (HF: {n_feats:,} training features)" if n_feats else ""
    body = f"""## Extractive QA: SQuAD v1.1 (bertflow-qa)

`python benchmarks/qa_squad.py --steps {args.steps} --systems {args.systems}{' --train-limit ' + str(args.train_limit) if args.train_limit else ''}{' --dev-limit ' + str(args.dev_limit) if args.dev_limit else ''}`
— {args.encoder}, {args.steps} steps of batch {args.batch} ({epochs:.2f} epochs over {len(train):,} train questions{feats}),
lr {args.lr:g}, {args.warmup:.0%} linear warm-up then linear decay, weight decay 0.01, grad clip 1.0, rows of at most
{MAX_LENGTH} wordpieces; {len(dev):,} dev questions, EM/F1 (official normalisation, max over the references) computed
by the same code for both. Machine: {machine()}.

| system | dev EM | dev F1 | training steps wall s | inference questions/s |
|---|---|---|---|---|
{rows}
"""
    if not args.no_write:
        write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
