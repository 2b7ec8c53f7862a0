"""Char, word and BPE tokenizers: round trips, unknown symbols, JSON."""

from __future__ import annotations

import pytest

from rnnkit.data.tokenizers import build_tokenizer, tokenizer_from_json
from rnnkit.errors import RnnkitError

TEXT = "def f(x):\n    return x + 1  # ✓ 𝔘\n" * 20


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_round_trip_and_json(kind):
    tokenizer = build_tokenizer(kind, [TEXT], vocab_size=300)
    ids = tokenizer.encode(TEXT)
    restored = tokenizer_from_json(tokenizer.to_json())
    assert list(restored.encode(TEXT)) == list(ids)
    if kind == "word":
        assert tokenizer.decode(tokenizer.encode("return x\n")) == "return x\n"
    else:
        assert tokenizer.decode(ids) == TEXT


def test_unknown_symbols_become_unk():
    char = build_tokenizer("char", ["abc"])
    assert char.decode(char.encode("abz𝔘")) == "ab<unk><unk>"
    word = build_tokenizer("word", ["the cat"])
    assert word.decode(word.encode("the dog")) == "the <unk>"
    bpe = build_tokenizer("bpe", [TEXT], vocab_size=300)
    assert bpe.decode(bpe.encode("zebra ∑")) == "zebra ∑"  # byte level: nothing is unknown


def test_min_freq_for_chars():
    tokenizer = build_tokenizer("char", ["aaab"], min_freq=2)
    assert tokenizer.decode(tokenizer.encode("ab")) == "a<unk>"


def test_bad_json():
    with pytest.raises(RnnkitError, match="unknown tokenizer kind"):
        tokenizer_from_json({"kind": "nope"}, source="tok.json")
    with pytest.raises(RnnkitError, match="tok.json"):
        tokenizer_from_json({"kind": "bpe", "tokenizer": "{broken"}, source="tok.json")
