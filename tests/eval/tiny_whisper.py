"""A tiny, random-init Whisper model in CTranslate2 format, written without `transformers`.

faster-whisper loads it exactly as it loads a converted checkpoint (model.bin, config.json,
vocabulary.json, tokenizer.json, preprocessor_config.json); its transcripts are garbage, so
tests of it assert the loading and decoding mechanics, not the words.

Vocabulary: the 256 byte-level characters (no merges), then Whisper's special tokens in
Whisper's order, then the 1,501 timestamp tokens faster-whisper expects right after
`<|notimestamps|>`. Fewer than 51,865 tokens, so CTranslate2 treats it as English-only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["SPECIAL_TOKENS", "write_tiny_whisper"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
TIMESTAMPS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
N_MELS = 80
"""faster-whisper's feature extractor default; CTranslate2 reads it from conv1's shape."""


def _tokenizer(path: Path) -> list[str]:
    """Write tokenizer.json; return the vocabulary in id order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS + TIMESTAMPS)  # ids follow the byte tokens
    tokenizer.save(str(path))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "token ids must be dense"
    return tokens


def _fill(spec: object, dims: dict[str, int], rng: np.random.Generator) -> None:
    """Give every required variable of `spec` a seeded random array of the right shape."""
    from ctranslate2.specs import model_spec

    d, ff, vocab = dims["d"], dims["ff"], dims["vocab"]
    # Shapes by (layer kind, variable): linear layers are [out, in], convolutions
    # [out, in, kernel]; the fused self-attention projection is q|k|v, cross-attention k|v.
    shapes = {
        "conv1/weight": (d, N_MELS, 3),
        "conv2/weight": (d, d, 3),
        "self_attention/linear_0/weight": (3 * d, d),
        "self_attention/linear_1/weight": (d, d),
        "attention/linear_0/weight": (d, d),
        "attention/linear_1/weight": (2 * d, d),
        "attention/linear_2/weight": (d, d),
        "ffn/linear_0/weight": (ff, d),
        "ffn/linear_1/weight": (d, ff),
        "embeddings/weight": (vocab, d),
        "projection/weight": (vocab, d),
    }

    def fill(layer: object, name: str, value: object) -> None:
        if value is not None:  # set already, or OPTIONAL (e.g. biases, sinusoidal positions)
            return
        attribute = name.rsplit("/", 1)[-1]
        if attribute in ("gamma", "beta"):
            array = np.ones(d) if attribute == "gamma" else np.zeros(d)
        else:
            shape = next(s for key, s in shapes.items() if name.endswith(key))
            array = rng.normal(0.0, 0.2, shape)
        setattr(layer, attribute, array.astype(np.float32))

    model_spec.visit_spec(spec, fill)
    # CTranslate2's Whisper needs explicit position tables (optional in the generic spec):
    # 1,500 encoder frames (30 s after the stride-2 convolution), 448 decoder positions.
    for layer, length in ((spec.encoder, 1500), (spec.decoder, 448)):
        table = rng.normal(0.0, 0.2, (length, d)).astype(np.float32)
        layer.position_encodings.encodings = table


def write_tiny_whisper(
    directory: str | Path, *, d_model: int = 16, heads: int = 2, layers: int = 1, seed: int = 0
) -> Path:
    """Write a random-init English Whisper (a few hundred kB) that faster-whisper can load."""
    from ctranslate2.specs import whisper_spec

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = _tokenizer(directory / "tokenizer.json")
    spec = whisper_spec.WhisperSpec(layers, heads, layers, heads)
    dims = {"d": d_model, "ff": 4 * d_model, "vocab": len(tokens)}
    _fill(spec, dims, np.random.default_rng(seed))
    spec.register_vocabulary(tokens)
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = []
    spec.config.lang_ids = []
    spec.config.alignment_heads = [(layers - 1, h) for h in range(heads)]
    spec.validate()
    spec.save(str(directory))
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"feature_size": N_MELS, "sampling_rate": 16000, "hop_length": 160})
    )
    return directory
