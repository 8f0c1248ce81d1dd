"""Tokenizers (the `tokenizers` package): word-level or byte-level BPE, trained on the captions.

- `word`: lower-cased, split on whitespace and punctuation, the most frequent words (the small
  lab's default: every shapes / digits word is one token).
- `bpe`: byte-level BPE (GPT-2 / CLIP style: no unknown token, any text encodes), lower-cased,
  trained on the caption corpus up to `vocab_size` (CLIP's is 49408).
- a path to a `tokenizer.json` (e.g. from a transformers folder): loaded as is.

Ids 0, 1, 2 are [PAD], [UNK], [CLS] in the tokenizers trained here; [CLS] is prepended, so the
small text tower pools its first token (the CLIP text tower pools the last real one). The
tokenizer is saved as `tokenizer.json` next to the checkpoint and inside it, so evaluation
encodes text exactly as training did.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch import Tensor

from pmilab.errors import InputError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]"]
KINDS = ("word", "bpe")


def train_tokenizer(captions: list[str], vocab_size: int = 4096, kind: str = "word") -> Tokenizer:
    """A `kind` tokenizer of at most `vocab_size` tokens, trained on `captions`."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        raise InputError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.train_from_iterator(captions, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))]
    )
    return tok


def pad_id(tok: Tokenizer) -> int:
    pid = tok.token_to_id("[PAD]")
    return 0 if pid is None else pid


def encode(tok: Tokenizer, texts: list[str], context: int) -> tuple[Tensor, Tensor]:
    """(ids (n, context) int64, mask (n, context) bool, True on real tokens); truncates."""
    ids = torch.full((len(texts), context), pad_id(tok), dtype=torch.long)
    mask = torch.zeros(len(texts), context, dtype=torch.bool)
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        row = enc.ids[:context]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    from pmilab import atomic

    atomic.write_text(path, tok.to_str())


def load_tokenizer(path: Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on a bad file
        raise InputError(f"{path} is not a `tokenizers` tokenizer.json ({e})") from None


def from_string(text: str) -> Tokenizer:
    return Tokenizer.from_str(text)
