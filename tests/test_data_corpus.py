"""Corpus files, UTF-8 errors with byte offsets, the token cache and its rebuilds."""

from __future__ import annotations

import os

import pytest

from rnnkit.data import corpus as corpus_mod
from rnnkit.data.corpus import encode_corpus, find_files, read_chunks
from rnnkit.data.tokenizers import CharTokenizer
from rnnkit.errors import RnnkitError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_find_files_file_list_dir_and_glob(tmp_path):
    a, b = write(tmp_path / "a.txt", "a"), write(tmp_path / "sub/b.txt", "b")
    write(tmp_path / "sub/c.md", "c")
    assert find_files(str(a)) == [a]
    assert find_files(f"{a},{b}") == [a, b]
    assert find_files(str(tmp_path)) == [a, b]
    assert find_files(str(tmp_path), "*.md") == [tmp_path / "sub/c.md"]
    assert find_files(str(tmp_path / "**/*.txt")) == [a, b]


@pytest.mark.parametrize("spec, message", [
    ("missing.txt", "no such file"), ("empty_dir", "no files matching"),
    ("*.nothing", "no files match"),
])
def test_find_files_errors(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(RnnkitError, match=message):
        find_files(spec)


def test_invalid_utf8_names_file_byte_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok line\nsecond \xff line\n")
    with pytest.raises(RnnkitError, match=r"bad.txt: invalid UTF-8 at byte 15 \(line 2\)"):
        list(read_chunks([path]))
    assert "".join(read_chunks([path], "replace")) == "ok line\nsecond \ufffd line\n"


def test_chunks_never_split_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", 7)
    text = "héllo wörld ✓ ünïcode\nzweite Zeile €€€ ok"
    path = write(tmp_path / "u.txt", text)
    assert "".join(read_chunks([path])) == text


def test_cache_reused_and_rebuilt_on_change(tmp_path):
    path = write(tmp_path / "c.txt", "abcabc\n")
    tokenizer = CharTokenizer.train(["abc\n"])
    first = encode_corpus([path], tokenizer, tmp_path / "cache", "train")
    assert first.tokens.tolist() == tokenizer.encode("abcabc\n").tolist() and first.chars == 7
    again = encode_corpus([path], tokenizer, tmp_path / "cache", "train")
    assert again.path == first.path
    write(path, "cab\n")
    os.utime(path, ns=(1, 1))
    changed = encode_corpus([path], tokenizer, tmp_path / "cache", "train")
    assert changed.path != first.path and not first.path.exists()
    assert changed.tokens.tolist() == tokenizer.encode("cab\n").tolist()
    other = CharTokenizer.train(["ccba\n"])
    assert encode_corpus([path], other, tmp_path / "cache", "train").path != changed.path


def test_empty_corpus_is_an_error(tmp_path):
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(RnnkitError, match="empty"):
        encode_corpus([path], CharTokenizer.train(["a"]), tmp_path / "cache", "train")
