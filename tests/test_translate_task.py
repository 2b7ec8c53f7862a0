"""Translation task: tiny encoder–decoders learn to reverse and to copy random sequences (with
and without attention), eval/run round trips, TOML config, and each bad input's message."""

from __future__ import annotations

import json
import random

import pytest

from rnnkit.cli.main import main
from rnnkit.tasks import translate

TINY = ["--tokenizer", "word", "--embed-dim", "24", "--dropout", "0", "--batch-size", "32",
        "--eval-every", "0", "--eval-bleu", "0", "--no-progress", "--no-tensorboard",
        "--no-plot", "--weight-decay", "0", "--beam-size", "3"]


def write_pairs(path, n: int, seed: int, rule) -> None:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice("abcdef") for _ in range(rng.randint(2, 5))]
        lines.append(" ".join(words) + "\t" + " ".join(rule(words)) + "\n")
    path.write_text("".join(lines))


def reverse(words):
    return reversed(words)


def copy(words):
    return words


def train(root, rule, *flags: str):
    write_pairs(root / "train.tsv", 1200, 1, rule)
    write_pairs(root / "valid.tsv", 100, 2, rule)
    code = main(["translate", "train", "--train", str(root / "train.tsv"), "--valid",
                 str(root / "valid.tsv"), "--out", str(root / "run"), *TINY, *flags])
    assert code == 0
    return root


def exact_match(root, beam_size: int = 1) -> float:
    pairs = [line.split("\t") for line in (root / "valid.tsv").read_text().splitlines()]
    translator = translate.load(root / "run")
    outputs = translate.translate(translator, [s for s, _ in pairs], beam_size=beam_size)
    return sum(o == t for o, (_, t) in zip(outputs, pairs, strict=True)) / len(pairs)


@pytest.fixture(scope="module")
def reverser(tmp_path_factory):
    return train(tmp_path_factory.mktemp("reverse"), reverse, "--attention", "additive",
                 "--hidden-size", "48", "--lr", "0.02", "--max-epochs", "2")


@pytest.fixture(scope="module")
def copier(tmp_path_factory):
    return train(tmp_path_factory.mktemp("copy"), copy, "--attention", "none",
                 "--hidden-size", "96", "--lr", "0.01", "--max-epochs", "4", "--cell", "lstm")


def test_learns_to_reverse_with_attention(reverser):
    assert exact_match(reverser) >= 0.7
    assert exact_match(reverser, beam_size=3) >= 0.7


def test_learns_to_copy_without_attention(copier):
    assert exact_match(copier) >= 0.6


def test_learns_to_copy_with_dot_attention(tmp_path):
    train(tmp_path, copy, "--attention", "dot", "--hidden-size", "48", "--lr", "0.02",
          "--max-epochs", "2", "--tie-embeddings")
    assert exact_match(tmp_path) >= 0.6


def test_eval_json_and_outputs(reverser, capsys):
    capsys.readouterr()
    output = reverser / "valid.out"
    assert main(["translate", "eval", "--checkpoint", str(reverser / "run"), "--data",
                 str(reverser / "valid.tsv"), "--beam-size", "1", "--json", "--output",
                 str(output)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bleu"] > 50 and result["chrf"] > 50 and 1.0 <= result["perplexity"] < 2.0
    assert result["sentences"] == 100 and result["beam_size"] == 1
    assert len(output.read_text().splitlines()) == 100


def test_run_reads_stdin_and_keeps_lines(reverser, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a b c\n\nf e d c\n"))
    capsys.readouterr()
    assert main(["translate", "run", "--checkpoint", str(reverser / "run")]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[1] == "" and len(lines) == 4  # three lines and the final newline
    assert lines[0] == "c b a"


def test_run_writes_attention(reverser, tmp_path):
    (tmp_path / "in.txt").write_text("a b c\n\n")
    assert main(["translate", "run", "--checkpoint", str(reverser / "run"), "--input",
                 str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.txt"),
                 "--attention-out", str(tmp_path / "att.jsonl"), "--beam-size", "2"]) == 0
    first, empty = [json.loads(line) for line in (tmp_path / "att.jsonl").read_text().splitlines()]
    assert first["source"] == ["a", "b", "c"] and first["output"] == ["c", "b", "a"]
    assert len(first["attention"]) == 3 and all(len(row) == 3 for row in first["attention"])
    assert first["attention"][0].index(max(first["attention"][0])) == 2  # "c" looks at "c"
    assert empty == {"source": [], "output": [], "attention": []}


def test_toml_config_and_flag_override(tmp_path):
    write_pairs(tmp_path / "p.tsv", 60, 3, copy)
    (tmp_path / "run.toml").write_text(
        f'train = "{tmp_path / "p.tsv"}"\nhidden_size = 8\nembed_dim = 4\ntokenizer = "word"\n'
        "[training]\nmax_steps = 2\nprogress = false\nplot = false\neval_bleu = 0\n")
    assert main(["translate", "train", "--config", str(tmp_path / "run.toml"), "--hidden-size",
                 "12", "--out", str(tmp_path / "run"), "--no-tensorboard"]) == 0
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 12 and saved["model"]["embed_dim"] == 4


def fails(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_line_counts_differ(tmp_path, capsys):
    (tmp_path / "s").write_text("a b\nc d\ne f\n")
    (tmp_path / "t").write_text("b a\nd c\n")
    err = fails(["translate", "train", "--train", str(tmp_path / "s"), "--train-tgt",
                 str(tmp_path / "t"), "--out", str(tmp_path / "run")], capsys)
    assert "has 3 lines but" in err and "has 2" in err and "Traceback" not in err


def test_empty_side(tmp_path, capsys):
    (tmp_path / "s").write_text("a b\nc d\n")
    (tmp_path / "t").write_text("")
    err = fails(["translate", "train", "--train", str(tmp_path / "s"), "--train-tgt",
                 str(tmp_path / "t"), "--out", str(tmp_path / "run")], capsys)
    assert "rnnkit: error:" in err and "empty side" in err


def test_source_longer_than_the_limit(tmp_path, capsys, monkeypatch):
    import io

    write_pairs(tmp_path / "p.tsv", 40, 4, copy)
    assert main(["translate", "train", "--train", str(tmp_path / "p.tsv"), "--out",
                 str(tmp_path / "run"), "--max-steps", "1", "--max-source-len", "6",
                 "--hidden-size", "8", "--embed-dim", "4", *TINY]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a b\na b c d e f a\n"))
    err = fails(["translate", "run", "--checkpoint", str(tmp_path / "run")], capsys)
    assert "<stdin>:2: source has 7 tokens, more than the model's limit of 6" in err


def test_checkpoint_of_another_task(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"task": "lm"}')
    for argv in (["translate", "run"], ["translate", "eval", "--data", "x.tsv"], ["chat"]):
        err = fails([*argv, "--checkpoint", str(tmp_path)], capsys)
        assert "made by task 'lm', expected a 'translate' checkpoint" in err


def test_eval_needs_one_kind_of_data(reverser, capsys):
    err = fails(["translate", "eval", "--checkpoint", str(reverser / "run"), "--src", "x"],
                capsys)
    assert "give either --src and --ref" in err
