"""Parallel corpora: two aligned files (plain, .gz) or a TSV; cleaning; length filter; errors."""

from __future__ import annotations

import gzip

import pytest

from rnnkit.data.parallel import clean, filter_pairs, read_parallel
from rnnkit.errors import RnnkitError


def test_two_files_plain_and_gzip(tmp_path):
    (tmp_path / "a.de").write_text("Ein Hund.\nZwei Katzen.\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.en.gz", "wt", encoding="utf-8") as handle:
        handle.write("A dog.\r\nTwo cats.\r\n")
    corpus = read_parallel(str(tmp_path / "a.de"), str(tmp_path / "a.en.gz"), lowercase=True)
    assert corpus.sources == ["ein hund.", "zwei katzen."]
    assert corpus.targets == ["a dog.", "two cats."]


def test_tsv_and_normalisation(tmp_path):
    decomposed = "Cafe\u0301"
    (tmp_path / "p.tsv").write_text(f"{decomposed}\tcoffee\n\nx\ty\n", encoding="utf-8")
    corpus = read_parallel(str(tmp_path / "p.tsv"))
    assert corpus.sources == ["Café", "x"] and corpus.targets == ["coffee", "y"]
    assert clean("ﬁ ", normalize="NFKC") == "fi"
    assert clean("ﬁ", normalize="none") == "ﬁ"


def test_line_counts_differ_names_both_counts(tmp_path):
    (tmp_path / "s").write_text("a\nb\nc\n")
    (tmp_path / "t").write_text("x\ny\n")
    with pytest.raises(RnnkitError, match=r"s has 3 lines but .*t has 2"):
        read_parallel(str(tmp_path / "s"), str(tmp_path / "t"))


def test_empty_side(tmp_path):
    (tmp_path / "s").write_text("a\nb\n")
    (tmp_path / "t").write_text("\n\n")
    with pytest.raises(RnnkitError, match=r"t: empty side"):
        read_parallel(str(tmp_path / "s"), str(tmp_path / "t"))
    (tmp_path / "p.tsv").write_text("a\t\nb\t \n")
    with pytest.raises(RnnkitError, match=r"empty side: the target column"):
        read_parallel(str(tmp_path / "p.tsv"))


def test_tsv_without_tab_names_the_line(tmp_path):
    (tmp_path / "p.tsv").write_text("a\tb\nno tab here\n")
    with pytest.raises(RnnkitError, match=r"p.tsv:2: expected source<TAB>target"):
        read_parallel(str(tmp_path / "p.tsv"))


def test_missing_file_and_bad_utf8(tmp_path):
    with pytest.raises(RnnkitError, match="file not found"):
        read_parallel(str(tmp_path / "nope"), str(tmp_path / "nope2"))
    (tmp_path / "bad").write_bytes(b"ok\n\xff\xfe\n")
    (tmp_path / "good").write_text("a\nb\n")
    with pytest.raises(RnnkitError, match=r"bad:2: not valid UTF-8"):
        read_parallel(str(tmp_path / "bad"), str(tmp_path / "good"))


def test_length_filter_reports_dropped_pairs():
    messages = []
    kept, dropped = filter_pairs([[1, 2], [1] * 9, [], [3]], [[1], [2], [3], [4] * 5], 4,
                                 messages.append)
    assert kept == [0] and dropped == 3
    assert messages == ["dropped 3 of 4 pairs (longer than 4 tokens or with an empty side)"]
    assert filter_pairs([[1]], [[2]], 4, messages.append) == ([0], 0) and len(messages) == 1
