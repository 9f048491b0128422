"""A tiny randomly initialised BERT for tests and examples (no pytest needed).

``write_tiny_bert`` writes a 2-layer, 32-wide BERT with a small WordPiece
vocabulary (milliseconds per forward); ``tiny_encoder_config`` points an
encoder component at it.
"""
import string
from pathlib import Path
from typing import Any, Union

TINY_WORDS = (
    "the a an of to and in is was for on with as by at from it that this be are were he she they "
    "we you i his her their apple google paris london berlin new york city company founded steve jobs "
    "john mary who what where when why how good bad great terrible movie film love hate not very "
    "question answer context world hello cat dog sat mat run ran fast slow big small red blue green"
).split()


# Chinese characters for a tiny Chinese BERT (BERT's Chinese vocabulary is characters: the
# tokenizer splits CJK text into one wordpiece per character)
TINY_CHINESE = (
    "我你他她们的是在有不了人这中大为上个国和地到以说时要就出会可也年生能而子那得于着下自之"
    "北京上海天安门今天气很好爱苹果公司创立乔布斯加州电影非常精彩糟糕问题答案什么哪里谁成"
    "，。？！、"
)


def write_tiny_bert(path: Path, *, layers: int = 2, width: int = 32, max_positions: int = 512, seed: int = 0,
                    dropout: float = 0.1, chinese: bool = False, masked_lm: bool = False) -> Path:
    """Write a tiny random BERT (model, config, fast tokenizer) to ``path``;
    ``dropout`` is its hidden and attention dropout (0 makes training deterministic).
    ``chinese`` adds ~100 common Chinese characters to the vocabulary (one
    wordpiece each, as in BERT's Chinese models). ``masked_lm`` writes a
    ``BertForMaskedLM`` checkpoint (random pre-training head weights
    ``cls.predictions.*`` included, as real BERT checkpoints have them)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    vocab += [w for w in TINY_WORDS if w not in vocab]
    vocab += ["##" + w for w in ("s", "ed", "ing", "ly", "er")]
    # A few CJK characters so their handling is exercised, the rest become [UNK].
    vocab += list("日本語中文")
    if chinese:
        vocab += list(TINY_CHINESE)
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=max_positions)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=width * 2, max_position_embeddings=max_positions, type_vocab_size=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    if masked_lm:
        from transformers import BertForMaskedLM

        model = BertForMaskedLM(config)
        with torch.no_grad():  # transformers starts the decoder bias at 0: make it tell in a comparison
            model.cls.predictions.bias.normal_(0.0, 0.5)
        model.save_pretrained(str(path))
    else:
        BertModel(config).save_pretrained(str(path))
    return path


def tiny_encoder_config(model_dir: Union[str, Path], window: int = 256, stride: int = 192, keep_layers: int = 1,
                        **model_args: Any) -> dict:
    """Config overrides for ``nlp.add_pipe('bertflow_encoder', config=...)``."""
    model = {
        "@architectures": "bertflow.Encoder.v1",
        "name": str(model_dir),
        "keep_layers": keep_layers,
        "get_windows": {"@misc": "bertflow.strided_windows.v1", "window": window, "stride": stride},
    }
    model.update(model_args)
    return {"model": model}
