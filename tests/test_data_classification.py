"""Classification readers: LABEL TEXT lines, TSV/CSV with or without header, JSONL."""

from __future__ import annotations

import pytest

from rnnkit.data.classification import read_examples
from rnnkit.errors import RnnkitError


def write(tmp_path, name, text, newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_label_text_lines(tmp_path, newline):
    path = write(tmp_path, "train", "1 a fine film\n\n0  dull ,  dull\n", newline)
    examples = read_examples(path)
    assert [(e.label, e.tokens, e.line) for e in examples] == [
        ("1", ["a", "fine", "film"], 1), ("0", ["dull", ",", "dull"], 3)]
    unlabelled = read_examples(path, require_labels=False)
    assert unlabelled[0].label is None and unlabelled[0].text == "1 a fine film"


def test_tsv_with_header_by_name(tmp_path):
    path = write(tmp_path, "d.tsv", "id\tsentence\tsentiment\n7\tGood Stuff\tpos\n8\tbad\tneg\n")
    examples = read_examples(path, text_column="sentence", label_column="sentiment",
                             lowercase=True)
    assert [(e.tokens, e.label, e.line) for e in examples] == [
        (["good", "stuff"], "pos", 2), (["bad"], "neg", 3)]


def test_tsv_without_header_by_number(tmp_path):
    path = write(tmp_path, "d.tsv", "pos\tgood\nneg\tbad\n")
    assert [e.label for e in read_examples(path)] == ["pos", "neg"]
    assert [e.text for e in read_examples(path, text_column=1, label_column=2)] == ["pos", "neg"]


def test_csv_quoting_and_header_flag(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"hello, world",greeting\n"a ""quote""",x\n')
    examples = read_examples(path, text_column=1, label_column=2, header=True)
    assert [(e.text, e.label) for e in examples] == [("hello, world", "greeting"),
                                                     ('a "quote"', "x")]


def test_jsonl_fields(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"review": "so good", "stars": 5}\n\n{"review": "meh", '
                                      '"stars": 2}\n')
    examples = read_examples(path, text_column="review", label_column="stars")
    assert [(e.tokens, e.label, e.line) for e in examples] == [(["so", "good"], "5", 1),
                                                               (["meh"], "2", 3)]


@pytest.mark.parametrize("name, text, options, fragment", [
    ("e.txt", "", {}, "e.txt: no examples found"),
    ("e.txt", "\n\n", {}, "e.txt: no examples found"),
    ("s.txt", "1 good\n0\n", {}, "s.txt:2: expected 'LABEL TEXT', got only '0'"),
    ("d.tsv", "a\tb\nx\n", {}, "d.tsv:2: --text-column 2 does not exist (the line has 1 columns)"),
    ("d.tsv", "a\tb\n", {"label_column": 3}, "d.tsv:1: --label-column 3 does not exist"),
    ("d.tsv", "text\tlabel\nx\ty\n", {"label_column": "sentiment", "text_column": "text"},
     "d.tsv:1: --label-column 'sentiment' is not in the header (columns: text, label)"),
    ("d.tsv", "text\tlabel\n\ty\n", {"label_column": "label", "text_column": "text"},
     "d.tsv:2: empty text"),
    ("d.tsv", "text\tlabel\nx\t\n", {"label_column": "label", "text_column": "text"},
     "d.tsv:2: empty label"),
    ("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {},
     "d.jsonl:2: no label field 'label' (fields: 'text')"),
    ("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", \n', {}, "d.jsonl:2: not valid JSON"),
    ("d.jsonl", '[1, 2]\n', {}, "d.jsonl:1: expected a JSON object"),
])
def test_bad_input_names_file_and_line(tmp_path, name, text, options, fragment):
    with pytest.raises(RnnkitError) as info:
        read_examples(write(tmp_path, name, text), **options)
    assert fragment in str(info.value)


def test_named_column_without_header_is_an_option_error(tmp_path):
    path = write(tmp_path, "d.tsv", "a\tb\n")
    with pytest.raises(RnnkitError, match="--label-column: 'label' is a name, but the file has "
                                          "no header"):
        read_examples(path, text_column=2, label_column="label", header=False)
