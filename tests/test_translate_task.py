"""Translation task: tiny encoder–decoders learn to reverse and to copy random sequences (with
and without attention), eval/predict/run round trips, TOML config, old flag names and old
checkpoints, and each bad input's message."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from rnnkit.apps import registry, runner
from rnnkit.apps.translate import TranslateConfig, TranslateModel
from rnnkit.cli.main import main
from rnnkit.tasks import translate
from rnnkit.train import TrainConfig

TINY = ["--tokenizer", "word", "--embedding-size", "24", "--dropout", "0", "--batch-size", "32",
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
    translator = runner.load("translate", root / "run", "cpu")
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


def test_eval_prints_two_lines(reverser, capsys):
    capsys.readouterr()
    assert main(["translate", "eval", "--checkpoint", str(reverser / "run"), "--src",
                 str(reverser / "valid.tsv"), "--ref", str(reverser / "valid.tsv"),
                 "--beam-size", "1", "--max-len-b", "2"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    name = reverser / "valid.tsv"
    assert first.startswith(f"{name} + {name}: 100 sentences, greedy, ")
    assert second.startswith("BLEU ") and "lower-cased" in second and "perplexity" in second


@pytest.mark.parametrize("verb", ["predict", "run"])
def test_predict_reads_stdin_and_keeps_lines(reverser, capsys, monkeypatch, verb):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a b c\n\nf e d c\n"))
    capsys.readouterr()
    assert main(["translate", verb, "--checkpoint", str(reverser / "run")]) == 0
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


def test_toml_config_and_flag_override(tmp_path, capsys):
    write_pairs(tmp_path / "p.tsv", 60, 3, copy)
    (tmp_path / "run.toml").write_text(
        f'train = "{tmp_path / "p.tsv"}"\nhidden_size = 8\nembed_dim = 4\ntokenizer = "word"\n'
        "[training]\nmax_steps = 2\nprogress = false\nplot = false\neval_bleu = 0\n")
    capsys.readouterr()
    assert main(["translate", "train", "--config", str(tmp_path / "run.toml"), "--hidden-size",
                 "12", "--out", str(tmp_path / "run"), "--no-tensorboard"]) == 0
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 12 and saved["model"]["embedding_size"] == 4
    assert capsys.readouterr().err.count("embed_dim is deprecated; use embedding_size") == 1


def test_old_flag_names_still_work_with_one_warning(tmp_path, capsys):
    write_pairs(tmp_path / "p.tsv", 40, 5, copy)
    capsys.readouterr()
    assert main(["translate", "train", "--train", str(tmp_path / "p.tsv"), "--out",
                 str(tmp_path / "run"), "--max-steps", "1", "--hidden-size", "8", *TINY[:2],
                 *TINY[4:], "--embed-dim", "4"]) == 0
    err = capsys.readouterr().err
    assert err.count("--embed-dim is deprecated; use --embedding-size") == 1
    assert err.count("deprecated") == 1
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["model"]["embedding_size"] == 4 and saved["options"]["embedding_size"] == 4


def to_old_layout(directory) -> None:
    """Rewrite a checkpoint's config.json as runs before the application contract wrote it."""
    saved = json.loads((directory / "config.json").read_text())
    saved["model"]["embed_dim"] = saved["model"].pop("embedding_size")
    options = saved.pop("options")
    options["embed_dim"] = options.pop("embedding_size")
    saved["translate"] = options
    (directory / "config.json").write_text(json.dumps(saved))


@pytest.mark.parametrize("layout", ["current", "old"])
def test_resume_keeps_the_options_and_tokenizers(tmp_path, capsys, layout):
    write_pairs(tmp_path / "p.tsv", 40, 6, copy)
    run = tmp_path / "run"
    assert main(["translate", "train", "--train", str(tmp_path / "p.tsv"), "--out", str(run),
                 "--max-steps", "1", "--hidden-size", "8", *TINY]) == 0
    if layout == "old":
        to_old_layout(run / "last")
    tokenizer = (run / "last" / "tgt_tokenizer.json").read_text()
    write_pairs(tmp_path / "p.tsv", 40, 7, reverse)  # other data: the saved tokenizers stay
    capsys.readouterr()
    assert main(["translate", "train", "--resume", str(run), "--max-steps", "2"]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert (run / "last" / "tgt_tokenizer.json").read_text() == tokenizer
    saved = json.loads((run / "last" / "config.json").read_text())
    assert saved["step"] == 2 and saved["model"]["hidden_size"] == 8
    assert saved["model"]["embedding_size"] == 24 and saved["options"]["tokenizer"] == "word"


def test_python_api_trains_one_step(tmp_path):
    write_pairs(tmp_path / "p.tsv", 40, 8, copy)
    config = TranslateConfig(train=str(tmp_path / "p.tsv"), tokenizer="word", eval_bleu=0,
                             model=TranslateModel(embedding_size=4, hidden_size=6, cell="lstm"))
    result = runner.train(registry.get("translate"), config, TrainConfig(
        max_steps=1, progress=False, tensorboard=False, plot=False), tmp_path / "run")
    assert result.steps == 1
    translator = runner.load("translate", tmp_path / "run", "cpu")
    assert translator.model.config.cell == "lstm" and translator.model.config.embedding_size == 4
    assert len(translate.translate(translator, ["a b", ""], beam_size=2)) == 2


def test_checkpoint_with_old_option_names_loads(reverser, tmp_path, capsys, monkeypatch):
    import io

    old = tmp_path / "old"
    shutil.copytree(reverser / "run" / "best", old)
    to_old_layout(old)
    monkeypatch.setattr("sys.stdin", io.StringIO("a b c\n"))
    capsys.readouterr()
    assert main(["translate", "run", "--checkpoint", str(old), "--beam-size", "1"]) == 0
    assert capsys.readouterr().out == "c b a\n"


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
                 "--hidden-size", "8", *TINY]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a b\na b c d e f a\n"))
    err = fails(["translate", "run", "--checkpoint", str(tmp_path / "run")], capsys)
    assert "<stdin>:2: source has 7 tokens, more than the model's limit of 6" in err


def test_checkpoint_of_another_task(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"task": "lm"}')
    for argv in (["translate", "run"], ["translate", "predict"], ["translate", "chat"],
                 ["translate", "eval", "--data", "x.tsv"], ["chat"]):
        err = fails([*argv, "--checkpoint", str(tmp_path)], capsys)
        assert "made by task 'lm', expected a 'translate' checkpoint" in err


def test_eval_needs_one_kind_of_data(reverser, capsys):
    for given in (["--src", "x"], [], ["--data", "x", "--ref", "y"]):
        err = fails(["translate", "eval", "--checkpoint", str(reverser / "run"), *given],
                    capsys)
        assert err.startswith("rnnkit: error: give either --src and --ref") and err.count("\n") == 1


def test_bad_options_name_the_flag(reverser, tmp_path, capsys):
    cases = [(["translate", "run", "--checkpoint", str(reverser / "run"), "--beam-size", "0"],
              "--beam-size: expected an integer >= 1, got 0"),
             (["translate", "eval", "--checkpoint", str(reverser / "run"), "--data", "x",
               "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
             (["translate", "train", "--train", "x", "--embed-dim", "0"],
              "--embedding-size: expected an integer >= 1, got 0"),
             (["translate", "train", "--train", "x", "--dropout", "1.5"],
              "--dropout: expected a value in [0, 1), got 1.5"),
             (["translate", "eval", "--checkpoint", str(reverser / "run"), "--data",
               str(tmp_path / "missing.tsv")], "missing.tsv")]
    for argv, message in cases:
        err = fails(argv, capsys)
        assert message in err and "Traceback" not in err, err
