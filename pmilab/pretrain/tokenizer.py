"""A word-level tokenizer (the `tokenizers` package) trained on the caption corpus.

Lower-cased, split on whitespace and punctuation; id 0 is [PAD], 1 is [UNK], 2 is [CLS], which
is prepended so the text tower can pool its first token. It is saved as `tokenizer.json` next to
the checkpoint, so evaluation encodes text exactly as training did.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor

SPECIALS = ["[PAD]", "[UNK]", "[CLS]"]


def train_tokenizer(captions: list[str], vocab_size: int = 4096) -> Tokenizer:
    """Word-level vocabulary of the (at most vocab_size - 3) most frequent words."""
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    tok.train_from_iterator(captions, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))]
    )
    return tok


def encode(tok: Tokenizer, texts: list[str], context: int) -> tuple[Tensor, Tensor]:
    """(ids (n, context) int64, mask (n, context) bool, True on real tokens); truncates."""
    ids = torch.zeros(len(texts), context, dtype=torch.long)  # [PAD] = 0
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        row = enc.ids[:context]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, ids != 0


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    tmp = Path(f"{path}.tmp")
    tok.save(str(tmp))
    tmp.replace(path)


def load_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))
