"""Shared by the post-training tests: a small byte-level BPE with the preset's special tokens, saved as
``superbpe_tokenizer`` saves it (``tokenizer.json`` + ``tokenizer_config.json`` with the chat template)."""

from __future__ import annotations

import json
from pathlib import Path

TEXTS = [
    "What is 37 + 48? The answer is 85. Which is larger, 41 or 24? What number comes after 46?",
    "Convert 3.5 miles to kilometres, rounded to two decimals.",
    "서울의 인구는 약 940만 명입니다. 東京は日本の首都です。",
    'def add(a, b):\n    return a + b\n{"name": "calculator", "arguments": {"expression": "2+3"}}',
] * 20
VOCAB = 512  # padded: 400 merges and bytes, the special tokens, reserved tokens up to here


def small_chat_tokenizer(folder: Path) -> Path:
    """Writes ``folder/tokenizer.json`` and ``folder/tokenizer_config.json``; returns the former."""
    from config import get_preset
    from posttrain import chat
    from tokenizer.superbpe import MULTILINGUAL_REGEX, finish_vocabulary, train_bpe

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(lambda: iter(TEXTS), 400, MULTILINGUAL_REGEX, "NFC")
    finish_vocabulary(tok, get_preset("tiny").tokenizer.special_tokens, VOCAB)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(chat.tokenizer_config()))
    return folder / "tokenizer.json"
