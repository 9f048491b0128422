"""Continued masked-LM pre-training: bertflow next to a plain Hugging Face loop,
and what task-adaptive pre-training (TAPT) does to the heads trained after it.

Part ``parity`` (one process, the two loops one after the other): minilm-l6
with a fresh masked-LM head (its checkpoint has none) trained for ``--parity-steps``
steps of 32 SST-2 train sentences (labels ignored), the same sentences in the
same order, lr 1e-4 with 10 % linear warm-up then linear decay, AdamW (weight
decay 0.01), dropout 0.1, gradient clipping at 1.0, 15 % whole-word masking:
  - bertflow: the ``projects/pretrain`` config (encoder + ``bertflow_mlm``,
    ``whole_word = true``, no frozen warm-up) driven by ``nlp.update`` as
    spaCy's loop does, then ``bertflow export-encoder``;
  - Hugging Face: ``BertForMaskedLM`` + ``DataCollatorForWholeWordMask``
    (wordpiece ``##`` words), tokenizing each batch in the loop as bertflow does.
Both trained models are then scored by the same code (``AutoModelForMaskedLM``,
bertflow's export for bertflow) on the same masked held-out inputs: the
SST-2 dev sentences masked once with a fixed seed. Training throughput is
wordpieces (special tokens included, no padding) per second of the loop.

Part ``tapt``: the ``projects/pretrain`` recipe on the unlabeled train
sentences of SST-2 and of CoNLL-2003: the masked-LM head alone on the frozen
encoder until its held-out masked accuracy stops rising (``--head-patience``,
at most ``--head-max-steps``), exported with the encoder; then encoder and head
together for ``--pretrain-steps`` at ``--pretrain-lr``, ``bertflow
export-encoder``. Then the textcat and NER projects' configs (NER without its
mention augmentation) fine-tuned on ``--n-labelled`` labelled sentences of
each (the same sample for every run), ``--seeds`` seeds, from minilm-l6 and
from the adapted encoder;
dev accuracy (SST-2 dev, 872) and entity F1 (CoNLL-2003 dev, 3,250).

    python benchmarks/mlm_pretrain.py --data ../shared/data --parts parity,tapt

``--ablation NAME`` runs a variant of the recipe (``--pretrain-lr 1e-5``,
``--textcat-pooling mean``, ...) and keeps it under NAME beside the main run,
paired with the main run's unadapted fine-tunes where the fine-tune is the same.

Part ``drift`` (after ``tapt``, same ``--work``): STS-B dev zero-shot
Spearman of minilm-l6 and of each adapted encoder, how far adaptation moved
the sentence embeddings the encoder was trained for.

Results go to benchmarks/results/mlm_pretrain.json as each part finishes;
the section of benchmarks/BENCHMARKS.md is written from it.
"""
import argparse
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "mlm_pretrain.json"


def sst2(path: Path):
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf8").splitlines()[1:]]
    return [(text.strip(), label.strip()) for text, label in rows if text.strip()]


def conll_sentences(path: Path):
    sentences, current = [], []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(current)
            current = []
            continue
        parts = line.split()
        current.append((parts[0], parts[-1]))
    if current:
        sentences.append(current)
    return sentences


def run(cmd, cwd=None, log=None):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if log is not None:
        log.write(f"$ {' '.join(map(str, cmd))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n")
        log.flush()
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout, time.perf_counter() - start


def save(results: dict, path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))


# ---------------------------------------------------------------- parity

def heldout_inputs(texts, tokenizer, seed: int):
    """The held-out sentences masked once (bertflow's whole-word masking, fixed
    seed): (input ids with [CLS]/[SEP], labels with -100 off target)."""
    import numpy
    import spacy
    from bertflow_mlm.masking import Masking, Vocabulary, mask_doc

    from bertflow.api import Tokenized

    nlp = spacy.blank("en")
    vocab = Vocabulary(tokenizer)
    rng = numpy.random.default_rng(seed)
    rows = []
    for text in texts:
        doc = nlp.make_doc(text)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        tok = Tokenized(enc["input_ids"], numpy.asarray(enc["offset_mapping"], dtype="int64").reshape(-1, 2), None)
        c = mask_doc(doc, tok, Masking(whole_word=True), vocab, rng)
        labels = [-100] * len(tok.ids)
        for i, label in zip(c.doc_index, c.doc_labels):
            labels[i] = int(label)
        rows.append(([tokenizer.cls_token_id] + c.tokenized.ids + [tokenizer.sep_token_id], [-100] + labels + [-100]))
    return rows


def score_hf(model_dir, rows, batch: int = 64) -> dict:
    """Mean cross-entropy and accuracy over the masked targets of ``rows``."""
    import torch
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(str(model_dir)).eval()
    total, correct, loss_sum = 0, 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            part = rows[i: i + batch]
            width = max(len(ids) for ids, _ in part)
            ids = torch.zeros((len(part), width), dtype=torch.long)
            labels = torch.full((len(part), width), -100, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for r, (x, y) in enumerate(part):
                ids[r, : len(x)] = torch.tensor(x)
                labels[r, : len(y)] = torch.tensor(y)
                mask[r, : len(x)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            on = labels != -100
            loss_sum += float(torch.nn.functional.cross_entropy(logits[on], labels[on], reduction="sum"))
            correct += int((logits[on].argmax(-1) == labels[on]).sum())
            total += int(on.sum())
    return {"loss": loss_sum / total, "perplexity": math.exp(loss_sum / total), "accuracy": correct / total,
            "targets": total}


def parity(args, work: Path, log) -> dict:
    import torch
    from spacy.util import load_config, registry
    from spacy.training.initialize import init_nlp
    from transformers import AutoTokenizer, BertForMaskedLM, get_linear_schedule_with_warmup

    from bertflow.api import create_text_corpus_reader, resolve_encoder
    from bertflow.compress.export import export_encoder

    rows = sst2(args.data / "sst2" / "train.tsv")
    random.Random(0).shuffle(rows)
    n = args.parity_steps * args.batch
    texts = [text for text, _ in rows[:n]]
    (work / "parity_train.txt").write_text("\n".join(texts) + "\n", encoding="utf8")
    heldout = [text for text, _ in sst2(args.data / "sst2" / "dev.tsv")]
    encoder_dir = resolve_encoder(args.encoder)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
    wordpieces = sum(len(ids) + 2 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    warmup = max(1, args.parity_steps // 10)
    out = {"steps": args.parity_steps, "batch": args.batch, "lr": args.lr, "texts": n, "wordpieces": wordpieces}

    # bertflow: the pretrain project's config, stepped the way spaCy's training loop steps it
    torch.manual_seed(0)
    config = load_config(ROOT / "projects" / "pretrain" / "configs" / "pretrain.cfg", overrides={
        "paths.train": str(work / "parity_train.txt"), "paths.dev": str(work / "parity_train.txt"),
        "paths.encoder": str(encoder_dir), "components.encoder.frozen_steps": 0,
        "corpora.train.paragraphs": False, "corpora.dev.paragraphs": False,
        "training.optimizer.learn_rate.initial_rate": args.lr,
        "training.optimizer.learn_rate.warmup_steps": warmup,
        "training.optimizer.learn_rate.total_steps": args.parity_steps})
    nlp = init_nlp(config)
    optimizer = registry.resolve({"o": nlp.config["training"]["optimizer"]})["o"]
    examples = list(create_text_corpus_reader(work / "parity_train.txt")(nlp))
    start = time.perf_counter()
    for step in range(args.parity_steps):
        nlp.update(examples[step * args.batch: (step + 1) * args.batch], drop=0.1, sgd=optimizer, losses={})
        optimizer.step_schedules()
    out["bertflow_s"] = time.perf_counter() - start
    nlp.to_disk(work / "bertflow_model")
    export_encoder(str(work / "bertflow_model"), work / "bertflow_hf")
    del nlp

    # Hugging Face: BertForMaskedLM + the whole-word collator, the same sentences in the same order
    try:
        from transformers import DataCollatorForWholeWordMask

        collator = DataCollatorForWholeWordMask(tokenizer, mlm_probability=0.15, return_tensors="pt")
    except ImportError:  # newer transformers: one collator with a flag
        from transformers import DataCollatorForLanguageModeling

        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, whole_word_mask=True)
    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(str(encoder_dir))
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n_, p in model.named_parameters() if not any(k in n_ for k in no_decay)],
               "weight_decay": 0.01},
              {"params": [p for n_, p in model.named_parameters() if any(k in n_ for k in no_decay)],
               "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    schedule = get_linear_schedule_with_warmup(opt, warmup, args.parity_steps)
    start = time.perf_counter()
    for step in range(args.parity_steps):
        batch_texts = texts[step * args.batch: (step + 1) * args.batch]
        features = [{"input_ids": ids} for ids in tokenizer(batch_texts, truncation=True, max_length=128)["input_ids"]]
        batch = collator(features)
        # the whole-word collator returns input_ids and labels only: mask the padding as a Trainer would
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        batch["attention_mask"] = (torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]).long()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
    out["hf_s"] = time.perf_counter() - start
    model.save_pretrained(str(work / "hf_model"))
    tokenizer.save_pretrained(str(work / "hf_model"))
    del model

    rows_eval = heldout_inputs(heldout, tokenizer, seed=123)
    out["heldout_sentences"] = len(heldout)
    out["bertflow"] = score_hf(work / "bertflow_hf", rows_eval)
    out["hf"] = score_hf(work / "hf_model", rows_eval)
    out["untrained_encoder_random_head"] = score_hf(encoder_dir, rows_eval)
    out["bertflow_wp_s"] = wordpieces / out["bertflow_s"]
    out["hf_wp_s"] = wordpieces / out["hf_s"]
    return out


# ---------------------------------------------------------------- TAPT

def last_step(stdout: str) -> int:
    """The last step spaCy's console logger printed (where patience stopped a run)."""
    steps = [int(row.split()[1]) for row in stdout.splitlines()
             if len(row.split()) > 2 and row.split()[0].isdigit() and row.split()[1].isdigit()]
    return steps[-1] if steps else 0


def pretrain(args, work: Path, name: str, text: Path, heldout: Path, log) -> dict:
    """The ``projects/pretrain`` recipe: the masked-LM head on the frozen
    encoder until its held-out masked accuracy stops rising (spaCy's patience),
    exported with the encoder; then the encoder and that head at a low rate."""
    py = sys.executable
    config = ROOT / "projects/pretrain/configs/pretrain.cfg"
    common = ["--paths.dev", heldout, "--corpora.train.paragraphs", "false", "--corpora.dev.paragraphs", "false",
              "--training.logger.progress_bar", "false", "--paths.train", text]
    head_steps = args.head_max_steps
    stdout, head_s = run([py, "-m", "bertflow", "train", config, "--output", work / f"head_{name}", *common,
                          "--paths.encoder", args.encoder, "--components.encoder.frozen", "true",
                          "--components.encoder.frozen_steps", 0,
                          "--training.max_steps", head_steps, "--training.eval_frequency", args.head_eval_every,
                          "--training.patience", args.head_patience,
                          "--training.optimizer.learn_rate.total_steps", head_steps,
                          "--training.optimizer.learn_rate.warmup_steps", max(1, head_steps // 20),
                          "--training.optimizer.learn_rate.initial_rate", args.head_lr], log=log)
    head_ran = last_step(stdout)
    run([py, "-m", "bertflow", "export-encoder", work / f"head_{name}" / "model-best", work / f"headenc_{name}",
         "--force"], log=log)
    head_eval, _ = run([py, "-m", "bertflow", "evaluate", work / f"head_{name}" / "model-best", heldout, "--json"],
                       log=log)
    steps = args.pretrain_steps
    _, seconds = run([py, "-m", "bertflow", "train", config, "--output", work / f"pre_{name}", *common,
                      "--paths.encoder", work / f"headenc_{name}", "--components.encoder.frozen_steps", 0,
                      "--training.max_steps", steps, "--training.eval_frequency", max(1, steps // 4),
                      "--training.optimizer.learn_rate.total_steps", steps,
                      "--training.optimizer.learn_rate.warmup_steps", max(1, steps // 10),
                      "--training.optimizer.learn_rate.initial_rate", args.pretrain_lr], log=log)
    run([py, "-m", "bertflow", "export-encoder", work / f"pre_{name}" / "model-best", work / f"enc_{name}",
         "--force"], log=log)
    stdout, _ = run([py, "-m", "bertflow", "evaluate", work / f"pre_{name}" / "model-best", heldout, "--json"],
                    log=log)
    return {"head_steps": head_ran, "head_seconds": head_s, "head_heldout": json.loads(head_eval)["heads"]["mlm"],
            "seconds": seconds, "heldout": json.loads(stdout)["heads"]["mlm"]}


def tapt(args, work: Path, log, results: dict) -> dict:
    if args.ablation:  # a variant of the recipe, kept beside the main run and compared with the same baselines
        out = results.setdefault("tapt_ablations", {}).setdefault(args.ablation, {"runs": []})
        out["command"] = "python benchmarks/mlm_pretrain.py " + shlex.join(sys.argv[1:])
        have = {(r["task"], r["seed"]) for r in out["runs"] if r["encoder"] == "minilm-l6"}
        # the main run's unadapted fine-tunes are this one's too where the fine-tune is unchanged (seeded runs)
        out["runs"] += [r for r in results.get("tapt", {}).get("runs", []) if r["encoder"] == "minilm-l6"
                        and (r["task"], r["seed"]) not in have
                        and (r["task"] == "ner" or not args.textcat_pooling)]
    else:
        out = results.setdefault("tapt", {"runs": []})
    out.update({"machine": machine(), "pretrain_steps": args.pretrain_steps, "head_max_steps": args.head_max_steps,
                "head_lr": args.head_lr, "head_patience": args.head_patience, "head_eval_every": args.head_eval_every,
                "n_labelled": args.n_labelled, "textcat_steps": args.textcat_steps, "ner_steps": args.ner_steps,
                "seeds": args.seeds, "pretrain_lr": args.pretrain_lr,
                "textcat_pooling": args.textcat_pooling or "pooler"})
    py = sys.executable
    sst_train = sst2(args.data / "sst2" / "train.tsv")
    sst_dev = sst2(args.data / "sst2" / "dev.tsv")
    conll_train = conll_sentences(args.data / "conll2003" / "train.txt")
    # unlabeled text: every train sentence, labels dropped
    (work / "sst2_text.txt").write_text("\n".join(t for t, _ in sst_train) + "\n", encoding="utf8")
    (work / "conll_text.txt").write_text("\n".join(" ".join(w for w, _ in s) for s in conll_train) + "\n",
                                         encoding="utf8")
    (work / "sst2_heldout.txt").write_text("\n".join(t for t, _ in sst_dev[:200]) + "\n", encoding="utf8")
    conll_dev = conll_sentences(args.data / "conll2003" / "dev.txt")
    (work / "conll_heldout.txt").write_text("\n".join(" ".join(w for w, _ in s) for s in conll_dev[:200]) + "\n",
                                            encoding="utf8")
    # the labelled samples: the same for every run
    rng = random.Random(0)
    sample = rng.sample(sst_train, args.n_labelled)
    (work / "sst2_labelled.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in sample))
    ner_sample = rng.sample(conll_train, args.n_labelled)
    (work / "conll_labelled.txt").write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in ner_sample) + "\n")
    run([py, "-m", "bertflow", "convert", "textcat", work / "sst2_labelled.tsv", work / "sst2_train.spacy",
         "--label-map", "0=NEGATIVE,1=POSITIVE"], log=log)
    run([py, "-m", "bertflow", "convert", "textcat", args.data / "sst2" / "dev.tsv", work / "sst2_dev.spacy",
         "--label-map", "0=NEGATIVE,1=POSITIVE"], log=log)
    run([py, "-m", "bertflow", "convert", "ner", work / "conll_labelled.txt", work / "conll_train.spacy"], log=log)
    run([py, "-m", "bertflow", "convert", "ner", args.data / "conll2003" / "dev.txt", work / "conll_dev.spacy"],
        log=log)

    encoders = {"minilm-l6": args.encoder}
    for name, text, heldout in (("sst2", "sst2_text.txt", "sst2_heldout.txt"),
                                ("conll", "conll_text.txt", "conll_heldout.txt")):
        if {"sst2": "textcat", "conll": "ner"}[name] not in args.tasks:
            continue
        key = f"pretrain_{name}"
        if key not in out:
            out[key] = pretrain(args, work, name, work / text, work / heldout, log)
            save(results, args.results)
        encoders[f"tapt-{name}"] = str(work / f"enc_{name}")

    # (the NER recipe's mention augmentation off: what changes between the two arms is the encoder alone)
    jobs = [("textcat", "sst2", ROOT / "projects/textcat/configs/textcat.cfg", "sst2_train.spacy", "sst2_dev.spacy",
             args.textcat_steps, "textcat", "cats_acc",
             ["--components.textcat.model.pooling", args.textcat_pooling] if args.textcat_pooling else []),
            ("ner", "conll", ROOT / "projects/ner/configs/ner.cfg", "conll_train.spacy", "conll_dev.spacy",
             args.ner_steps, "ner", "ents_f", ["--corpora.train.augmenter.prob", 0.0])]
    done = {(r["task"], r["encoder"], r["seed"]) for r in out["runs"]}
    for task, corpus, config, train, dev, steps, head, metric, extra in jobs:
        if task not in args.tasks:
            continue
        for seed in args.seeds:
            for enc_name in ("minilm-l6", f"tapt-{corpus}"):
                if (task, enc_name, seed) in done:
                    continue
                target = work / f"ft_{task}_{enc_name}_{seed}"
                _, seconds = run([py, "-m", "bertflow", "train", config, "--output", target,
                                  "--paths.train", work / train, "--paths.dev", work / dev,
                                  "--paths.encoder", encoders[enc_name], "--system.seed", seed,
                                  "--training.max_steps", steps, "--training.eval_frequency", steps,
                                  "--training.optimizer.learn_rate.total_steps", steps,
                                  "--training.optimizer.learn_rate.warmup_steps", max(1, steps // 10),
                                  "--training.logger.progress_bar", "false", *extra], log=log)
                stdout, _ = run([py, "-m", "bertflow", "evaluate", target / "model-last", work / dev, "--json"],
                                log=log)
                score = json.loads(stdout)["heads"][head][metric]
                out["runs"].append({"task": task, "encoder": enc_name, "seed": seed, "metric": metric,
                                    "score": score, "seconds": seconds})
                save(results, args.results)
                print(f"{task} {enc_name} seed {seed}: {metric} {score:.4f} ({seconds:.0f} s)", flush=True)
    return out


def drift(args, work: Path, results: dict) -> dict:
    """How far each adapted encoder moved from the sentence-embedding model it
    started as: STS-B dev zero-shot Spearman (cosine of mean-pooled states)."""
    from transformers import AutoModel, AutoTokenizer

    from bertflow.encoder.names import resolve_encoder
    from compress import stsb_zero_shot
    from similarity_stsb import read_stsb

    pairs = read_stsb(args.data / "stsb" / "dev.tsv")
    path = resolve_encoder(args.encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoders = {"minilm-l6": path, **{f"tapt-{name}": str(work / f"enc_{name}") for name in ("sst2", "conll")
                                      if (work / f"enc_{name}" / "config.json").exists()}}
    out = {name: stsb_zero_shot(AutoModel.from_pretrained(enc).eval(), tokenizer, pairs)
           for name, enc in encoders.items()}
    results.setdefault("tapt", {"runs": []})["stsb_zero_shot"] = out
    print(json.dumps({"stsb_zero_shot": out}), flush=True)
    return out


# ---------------------------------------------------------------- report

def mean_std(values):
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return m, sd


def render(results: dict) -> str:
    lines = ["## Continued pre-training (masked LM)", ""]
    p = results.get("parity")
    if p:
        lines += [f"Machine: {p.get('machine', results.get('machine', '?'))}.", "",
            f"**bertflow vs a plain Hugging Face MLM loop** (`python benchmarks/mlm_pretrain.py --parts parity`): "
            f"minilm-l6 with a fresh masked-LM head, {p['steps']} steps x {p['batch']} SST-2 train sentences "
            f"(the same {p['texts']:,} in the same order, {p['wordpieces']:,} wordpieces), lr {p['lr']:g}, 10 % warm-up, "
            f"AdamW, dropout 0.1, 15 % whole-word masking (bertflow: words = spaCy tokens; HF: "
            f"`DataCollatorForWholeWordMask`, words = `##` wordpieces). Both scored by the same HF code "
            f"(`AutoModelForMaskedLM`; bertflow's through `bertflow export-encoder`) on the same masked inputs: "
            f"the {p['heldout_sentences']} SST-2 dev sentences, masked once with a fixed seed.", "",
            "| system | held-out masked loss | perplexity | masked-token acc | train s | wordpieces/s |",
            "|---|---|---|---|---|---|",
            f"| bertflow (`bertflow_mlm`, spaCy update loop) | {p['bertflow']['loss']:.3f} | "
            f"{p['bertflow']['perplexity']:.1f} | {p['bertflow']['accuracy']:.3f} | {p['bertflow_s']:.0f} | "
            f"{p['bertflow_wp_s']:,.0f} |",
            f"| Hugging Face (`BertForMaskedLM` loop) | {p['hf']['loss']:.3f} | {p['hf']['perplexity']:.1f} | "
            f"{p['hf']['accuracy']:.3f} | {p['hf_s']:.0f} | {p['hf_wp_s']:,.0f} |",
            f"| untrained (minilm-l6, random head) | {p['untrained_encoder_random_head']['loss']:.3f} | "
            f"{p['untrained_encoder_random_head']['perplexity']:.0f} | "
            f"{p['untrained_encoder_random_head']['accuracy']:.3f} | | |",
            "",
            f"Loss: bertflow / HF = {p['bertflow']['loss'] / p['hf']['loss']:.3f} (target within 2 %); "
            f"speed: bertflow / HF = {p['bertflow_wp_s'] / p['hf_wp_s']:.2f}x (target >= 0.9x).", ""]
    t = results.get("tapt")
    if t and t.get("runs"):
        lines += [
            f"Machine: {t.get('machine', results.get('machine', '?'))}.", "",
            f"**Task-adaptive pre-training** (`python benchmarks/mlm_pretrain.py --parts tapt,drift --seeds "
            f"{','.join(map(str, t['seeds']))}`): the "
            f"`projects/pretrain` recipe on the unlabeled train sentences of each dataset, batch 32. Stage 1: the "
            f"masked-LM head alone on the frozen encoder (lr {t['head_lr']:g}), held-out masked accuracy every "
            f"{t['head_eval_every']} steps, stopped when it has not risen for {t['head_patience']} steps (at most "
            f"{t['head_max_steps']}); `bertflow export-encoder` writes the encoder with that head. Stage 2: the "
            f"encoder and the head together, {t['pretrain_steps']} steps at lr {t['pretrain_lr']:g} (10 % warm-up, "
            f"linear decay), the best held-out checkpoint exported. Then the textcat / NER projects' configs on "
            f"{t['n_labelled']:,} labelled sentences ({t['textcat_steps']} / {t['ner_steps']} steps), seeds "
            f"{', '.join(map(str, t['seeds']))}, from minilm-l6 and from the adapted encoder; full dev sets.", "",
            "| pre-training run | stage 1 steps (stopped) | stage 1 s | held-out masked acc after stage 1 | "
            "stage 2 steps | stage 2 s | held-out masked acc | held-out loss |", "|---|---|---|---|---|---|---|---|"]
        for name in ("sst2", "conll"):
            pre = t.get(f"pretrain_{name}")
            if pre:
                lines.append(f"| {name} train sentences | {pre['head_steps']} | {pre['head_seconds']:.0f} | "
                             f"{pre['head_heldout']['mlm_acc']:.3f} | {t['pretrain_steps']} | {pre['seconds']:.0f} | "
                             f"{pre['heldout']['mlm_acc']:.3f} | {pre['heldout']['mlm_loss']:.3f} |")
        if t.get("note"):
            lines += ["", t["note"]]
        lines += ["", "| task (dev metric) | encoder | mean | sd | runs |", "|---|---|---|---|---|"]
        for task, corpus in (("textcat", "sst2"), ("ner", "conll")):
            for enc in ("minilm-l6", f"tapt-{corpus}"):
                scores = [r["score"] for r in t["runs"] if r["task"] == task and r["encoder"] == enc]
                if scores:
                    m, sd = mean_std(scores)
                    metric = next(r["metric"] for r in t["runs"] if r["task"] == task)
                    lines.append(f"| {task} ({metric}) | {enc} | {m:.4f} | {sd:.4f} | "
                                 f"{', '.join(f'{s:.4f}' for s in scores)} |")
        drifted = t.get("stsb_zero_shot")
        if drifted:
            lines += ["", "How far each encoder moved from the sentence-embedding model it started as (`--parts drift`): "
                      "STS-B dev zero-shot Spearman, cosine of mean-pooled states: "
                      + ", ".join(f"{name} {value:.4f}" for name, value in drifted.items()) + "."]
        lines.append("")
        lines += [f"- {task}: {delta}." for task, delta in adapted_deltas(t)]
        ablations = results.get("tapt_ablations", {})
        if ablations:
            lines += ["", "Variants of the recipe, each against the same unadapted runs (or its own where it changes "
                      "the fine-tune):"]
        for name, ab in ablations.items():
            held = "".join(f"; {corpus} held-out masked acc after stage 2 {ab[key]['heldout']['mlm_acc']:.3f}"
                           for corpus in ("sst2", "conll") if (key := f"pretrain_{corpus}") in ab)
            lines.append(f"- **{name}** (`{ab['command']}`{held}): "
                         + "; ".join(f"{task} {delta}" for task, delta in adapted_deltas(ab)) + ".")
    return "\n".join(lines)


def adapted_deltas(t: dict):
    """(task, "adapted − unadapted ... points (per seed ...)") for each task with paired runs."""
    for task, corpus in (("textcat", "sst2"), ("ner", "conll")):
        by_seed = {(r["encoder"], r["seed"]): r["score"] for r in t["runs"] if r["task"] == task}
        seeds = [s for s in t["seeds"] if (f"tapt-{corpus}", s) in by_seed and ("minilm-l6", s) in by_seed]
        if seeds:
            deltas = [100 * (by_seed[(f"tapt-{corpus}", s)] - by_seed[("minilm-l6", s)]) for s in seeds]
            means = [sum(by_seed[(enc, s)] for s in seeds) / len(seeds) for enc in ("minilm-l6", f"tapt-{corpus}")]
            yield task, (f"{means[0]:.4f} → {means[1]:.4f}, adapted − unadapted {sum(deltas) / len(deltas):+.2f} "
                         f"points (per seed {', '.join(f'{d:+.2f}' for d in deltas)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--parts", default="parity,tapt")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--parity-steps", type=int, default=150)
    parser.add_argument("--pretrain-steps", type=int, default=400, help="encoder stage steps")
    parser.add_argument("--pretrain-lr", type=float, default=3e-5, help="encoder stage peak rate")
    parser.add_argument("--head-max-steps", type=int, default=1000, help="head stage: at most this many steps")
    parser.add_argument("--head-lr", type=float, default=1e-3, help="head stage peak rate")
    parser.add_argument("--head-eval-every", type=int, default=50)
    parser.add_argument("--head-patience", type=int, default=150,
                        help="head stage: stop when held-out masked accuracy has not risen for this many steps")
    parser.add_argument("--n-labelled", type=int, default=1000)
    parser.add_argument("--textcat-steps", type=int, default=100)
    parser.add_argument("--ner-steps", type=int, default=150)
    parser.add_argument("--textcat-pooling", default=None,
                        help="the textcat head's pooling (default: the project's, \"pooler\"), e.g. mean")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results in the results file")
    parser.add_argument("--tasks", type=lambda s: s.split(","), default=["textcat", "ner"],
                        help="TAPT tasks: textcat (SST-2 text), ner (CoNLL text)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="results file (JSON; earlier results there are reused unless --fresh)")
    parser.add_argument("--ablation", default=None,
                        help="name a variant of the recipe (e.g. --pretrain-lr 1e-5): its tapt runs are kept under "
                             "this name beside the main run's, which the report keeps as the recipe's")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() and not args.fresh else {}
    results["machine"] = machine()
    work = args.work or Path(tempfile.mkdtemp(prefix="bertflow-mlm-"))
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "log.txt", "a") as log:
        parts = args.parts.split(",")
        if "parity" in parts:
            results["parity"] = {**parity(args, work, log), "machine": machine()}
            save(results, args.results)
            print(json.dumps(results["parity"], indent=2), flush=True)
        if "tapt" in parts:
            tapt(args, work, log, results)
            save(results, args.results)
        if "drift" in parts:
            drift(args, work, results)
            save(results, args.results)
    section = render(results)
    print(section)
    if not args.no_write:
        write_section("mlm-pretrain", section)


if __name__ == "__main__":
    main()
