"""Vocabulary: ids, specials, unknown tokens, JSON round trip, bad files."""

from __future__ import annotations

import json

import pytest

from rnnkit.data.vocab import Vocabulary
from rnnkit.errors import RnnkitError


def test_specials_first_then_by_frequency():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "b", "a", "c"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)


def test_min_freq_and_max_size():
    data = [["a", "a", "a", "b", "b", "c"]]
    assert Vocabulary.build(data, min_freq=2).tokens[4:] == ["a", "b"]
    assert Vocabulary.build(data, max_size=1).tokens[4:] == ["a"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build(data, min_freq=0)


def test_encode_decode_unknown_and_framing():
    vocab = Vocabulary.build([["x", "y"]])
    ids = vocab.encode(["x", "zzz"], bos=True, eos=True)
    assert ids == [2, vocab.id_of("x"), 1, 3]
    assert vocab.decode(ids) == ["<bos>", "x", "<unk>", "<eos>"]
    assert vocab.decode(ids, skip_specials=True) == ["x"]


def test_no_unk_special_raises_on_unknown():
    vocab = Vocabulary(["a"], specials=())
    assert vocab.unk_id is None
    with pytest.raises(KeyError, match="'b'"):
        vocab.encode(["b"])


def test_json_round_trip(tmp_path):
    vocab = Vocabulary.build([list("hello world")], specials=("<unk>",))
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    assert Vocabulary.from_json(json.loads(path.read_text())) == vocab


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "cannot read"), ('{"tokens": []}', "not an rnnkit vocabulary"),
     ('{"format": "rnnkit.vocabulary", "specials": ["<unk>"], "tokens": ["a"]}', "start with")],
)
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(RnnkitError, match=message) as info:
        Vocabulary.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(RnnkitError, match="not found"):
        Vocabulary.load(tmp_path / "missing.json")
