"""CoNLL-U and column-file readers and the tag writer, on tricky inputs."""

from __future__ import annotations

import pytest

from rnnkit.data.conll import read_tagged, write_tagged
from rnnkit.errors import RnnkitError

CONLLU = (
    "# newdoc id = d1\n"
    "# text = I can't go.\n"
    "1\tI\tI\tPRON\tPP\t_\t3\tnsubj\t_\t_\n"
    "2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_\n"
    "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n"
    "3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t0:root\t_\n"
    "4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
    "5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_\n"
    "\n"
    "# text = Hi\n"
    "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"
    "\n\n\n"
)


def write(tmp_path, name, text, newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_conllu_skips_comments_multiword_and_empty_nodes(tmp_path, newline):
    doc = read_tagged(write(tmp_path, "a.conllu", CONLLU, newline))
    assert [s.words for s in doc.sentences] == [["I", "ca", "n't", "go", "."], ["Hi"]]
    assert [s.tags for s in doc.sentences] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert doc.sentences[0].line_numbers == [3, 5, 6, 8, 9]
    assert doc.where(1, 0).endswith("a.conllu:12")


@pytest.mark.parametrize("column, expected", [("xpos", "PP"), ("5", "PP"), ("lemma", "I"),
                                              ("DEPREL", "nsubj")])
def test_conllu_selectable_column(tmp_path, column, expected):
    doc = read_tagged(write(tmp_path, "a.conllu", CONLLU), tag_column=column)
    assert doc.sentences[0].tags[0] == expected


def test_conllu_no_final_newline(tmp_path):
    doc = read_tagged(write(tmp_path, "a.conllu", CONLLU.rstrip("\n")))
    assert len(doc.sentences) == 2


def test_conllu_write_round_trip_changes_only_the_tag_column(tmp_path):
    doc = read_tagged(write(tmp_path, "a.conllu", CONLLU))
    out = tmp_path / "out.conllu"
    tags = [["X"] * 5, ["Y"]]
    text = write_tagged(doc, tags, out)
    assert out.read_text() == text
    source = [line for line in CONLLU.splitlines()]
    written = text.splitlines()
    assert len(written) == len(source) - 2  # the trailing blank lines collapse into one
    for before, after in zip(source, written):
        if before.split("\t")[0].isdigit():
            cells_before, cells_after = before.split("\t"), after.split("\t")
            assert cells_after[3] in ("X", "Y")
            assert cells_after[:3] + cells_after[4:] == cells_before[:3] + cells_before[4:]
        else:
            assert before == after
    again = read_tagged(out)
    assert [s.tags for s in again.sentences] == tags


def test_conllu_round_trip_of_gold_tags_is_identity(tmp_path):
    expected = CONLLU.rstrip("\n") + "\n\n"
    doc = read_tagged(write(tmp_path, "a.conllu", expected))
    assert write_tagged(doc, [s.tags for s in doc.sentences], None) == expected


COLUMNS = (
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "EU NNP B-NP B-ORG\n"
    "rejects VBZ B-VP O\n"
    "German JJ B-NP B-MISC\n"
    "\n"
    "Peter NNP B-NP B-PER\n"
    "Blackburn NNP I-NP I-PER\n"
    "\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_column_file_docstart_and_last_column(tmp_path, newline):
    doc = read_tagged(write(tmp_path, "train.txt", COLUMNS, newline))
    assert doc.format == "conll"
    assert [s.words for s in doc.sentences] == [["EU", "rejects", "German"],
                                                ["Peter", "Blackburn"]]
    assert doc.sentences[1].tags == ["B-PER", "I-PER"]
    by_number = read_tagged(write(tmp_path, "t.txt", COLUMNS), tag_column=2)
    assert by_number.sentences[0].tags[0] == "NNP"


def test_column_file_round_trip_keeps_docstart_and_other_columns(tmp_path):
    doc = read_tagged(write(tmp_path, "train.txt", COLUMNS))
    text = write_tagged(doc, [["O", "O", "O"], ["B-LOC", "O"]], None)
    assert text.splitlines()[0] == "-DOCSTART- -X- -X- O"
    assert "EU NNP B-NP O\n" in text and "Peter NNP B-NP B-LOC\n" in text
    assert text == write_tagged(read_tagged(write(tmp_path, "b.txt", text)),
                                [["O", "O", "O"], ["B-LOC", "O"]], None)


def test_words_only_file_gets_a_tag_column_appended(tmp_path):
    path = write(tmp_path, "raw.txt", "Hello\nworld\n\nBye\n")
    doc = read_tagged(path, require_tags=False)
    assert doc.sentences[0].tags == [None, None]
    assert write_tagged(doc, [["A", "B"], ["C"]], None) == "Hello A\nworld B\n\nBye C\n\n"


@pytest.mark.parametrize("name, text, fragment", [
    ("a.conllu", "1\tI\tI\tPRON\tPP\t_\t3\tnsubj\t_\n", "a.conllu:1: expected 10 tab-separated "
     "columns, got 9"),
    ("a.conllu", "# c\n1\tI\tI\tPRON\t_\t_\t0\troot\t_\t_\n2\tx\tx\t_\t_\t_\t1\tdep\t_\t_\n",
     "a.conllu:3: missing tag (UPOS column is '_')"),
    ("a.conllu", "x\tI\tI\tPRON\t_\t_\t0\troot\t_\t_\n", "a.conllu:1: bad token ID 'x'"),
    ("a.conllu", "", "a.conllu: no sentences found"),
    ("a.conllu", "\n# only a comment\n\n", "a.conllu: no sentences found"),
    ("a.txt", "a X\nb Y\n\nc\n", "a.txt:4: expected 2 columns as on line 1, got 1 (missing tag?)"),
    ("a.txt", "a\nb\n", "a.txt:1: missing tag (the line has no column 2)"),
])
def test_bad_input_names_file_and_line(tmp_path, name, text, fragment):
    with pytest.raises(RnnkitError, match=None) as info:
        read_tagged(write(tmp_path, name, text))
    assert fragment in str(info.value)


def test_missing_tag_column(tmp_path):
    with pytest.raises(RnnkitError, match=r"a.txt:1: tag column 5 does not exist"):
        read_tagged(write(tmp_path, "a.txt", "a X\n"), tag_column=5)
    with pytest.raises(RnnkitError, match=r"--tag-column: no column 'upsos'"):
        read_tagged(write(tmp_path, "a.conllu", CONLLU), tag_column="upsos")
    with pytest.raises(RnnkitError, match=r"--tag-column: column 11 does not exist"):
        read_tagged(write(tmp_path, "a.conllu", CONLLU), tag_column=11)


def test_missing_file():
    with pytest.raises(RnnkitError, match="nope.conllu: file not found"):
        read_tagged("nope.conllu")
