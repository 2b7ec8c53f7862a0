"""Tagging task: a tiny tagger learns a synthetic rule; predict round-trips; bucketing does not
change predictions; bad input gives one clear message through the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch

from rnnkit.apps import registry, runner
from rnnkit.apps.tag import TagConfig, TagModel
from rnnkit.cli.main import main
from rnnkit.data.conll import read_tagged
from rnnkit.models.tagger import Tagger, TaggerConfig
from rnnkit.tasks import tag
from rnnkit.train import TrainConfig

TINY = ["--embedding-size", "16", "--char-dim", "8", "--char-hidden", "16", "--hidden-size", "24",
        "--num-layers", "1", "--dropout", "0", "--word-dropout", "0", "--min-freq", "1",
        "--batch-size", "8", "--lr", "0.02", "--eval-every", "0", "--no-progress",
        "--no-tensorboard", "--no-plot", "--weight-decay", "0"]


def synthetic(n: int, seed: int) -> str:
    """Column file: tag X after 'the' (needs context), else V for words ending in a/b/c, else N
    (needs the word or its spelling)."""
    rng = random.Random(0)
    pool = ["".join(rng.choice("abcdefg") for _ in range(rng.randint(2, 4))) for _ in range(12)]
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        words = [rng.choice([*pool, "the"]) for _ in range(rng.randint(2, 8))]
        tags = ["X" if i and words[i - 1] == "the" else "V" if w[-1] in "abc" else "N"
                for i, w in enumerate(words)]
        blocks.append("".join(f"{w} _ {t}\n" for w, t in zip(words, tags, strict=True)))
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    (root / "train.txt").write_text(synthetic(120, 1))
    (root / "dev.txt").write_text(synthetic(40, 2))
    code = main(["tag", "train", "--train", str(root / "train.txt"), "--valid",
                 str(root / "dev.txt"), "--out", str(root / "run"), "--max-epochs", "3", *TINY])
    assert code == 0
    return root


def test_tagger_learns_the_rule(trained, capsys):
    capsys.readouterr()
    assert main(["tag", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "dev.txt"), "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 0.95
    assert set(result["per_tag"]) == {"N", "V", "X"}


def test_predict_round_trips_the_file(trained, tmp_path):
    text = (trained / "dev.txt").read_text()
    out = tmp_path / "pred.txt"
    assert main(["tag", "predict", "--checkpoint", str(trained / "run"), "--input",
                 str(trained / "dev.txt"), "--output", str(out)]) == 0
    written, source = out.read_text().splitlines(), text.splitlines()
    assert len(written) == len(source) + 1  # a blank line now ends the last sentence too
    for before, after in zip(source, written, strict=False):
        assert before.split()[:2] == after.split()[:2]
    agree = sum(b == a for b, a in zip(source, written, strict=False)) / len(source)
    assert agree > 0.95


def test_bucketed_and_unbucketed_predictions_agree(trained):
    loaded = runner.load("tag", trained / "run", "cpu")
    model, vocabs = loaded.model, loaded.vocabs
    items = tag.encode(read_tagged(trained / "dev.txt"), vocabs)
    bucketed = tag.predict_tags(model, items, vocabs, batch_size=7, bucketed=True)
    plain = tag.predict_tags(model, items, vocabs, batch_size=7, bucketed=False)
    one_by_one = tag.predict_tags(model, items, vocabs, batch_size=1, bucketed=False)
    assert bucketed == plain == one_by_one


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("chars", [0, 11])
def test_padding_never_changes_scores(cell, chars):
    model = Tagger(TaggerConfig(vocab_size=20, num_tags=4, char_vocab_size=chars, embedding_size=6,
                                char_dim=4, char_hidden=5, hidden_size=7, cell=cell,
                                dropout=0.0)).eval()
    words = torch.randint(2, 20, (3, 6))
    lengths = torch.tensor([6, 4, 1])
    char_lengths = torch.randint(1, 5, (3, 6)) * (torch.arange(6) < lengths[:, None])
    letters = torch.randint(2, 11, (3, 6, 4)) if chars else None
    scores = model(words, lengths, letters, char_lengths if chars else None)
    for b, n in enumerate(lengths.tolist()):
        alone = model(words[b : b + 1, :n], lengths[b : b + 1],
                      letters[b : b + 1, :n] if chars else None,
                      char_lengths[b : b + 1, :n] if chars else None)
        torch.testing.assert_close(scores[b, :n], alone[0], rtol=1e-5, atol=1e-6)


def test_one_train_step_changes_parameters(tmp_path):
    (tmp_path / "t.txt").write_text(synthetic(10, 3))
    model = TagModel(embedding_size=4, char_dim=4, char_hidden=4, hidden_size=4, num_layers=1)
    config = TagConfig(train=str(tmp_path / "t.txt"), batch_size=64, model=model)
    result = runner.train(registry.get("tag"), config, TrainConfig(
        max_steps=1, progress=False, tensorboard=False, plot=False), str(tmp_path / "run"))
    assert result.steps == 1 and (tmp_path / "run" / "best" / "tags.json").exists()


CONLLU_GOOD = "1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n\n"


@pytest.mark.parametrize("name, text, args, message", [
    ("bad.conllu", "1\tA\ta\tDET\t_\t_\t0\troot\n\n", [],
     "bad.conllu:1: expected 10 tab-separated columns, got 8"),
    ("bad.conllu", CONLLU_GOOD + "1\tB\tb\t_\t_\t_\t0\troot\t_\t_\n", [],
     "bad.conllu:3: missing tag (UPOS column is '_')"),
    ("bad.txt", "a X\nb\n", [], "bad.txt:2: expected 2 columns as on line 1, got 1"),
    ("bad.txt", "a X\n", ["--tag-column", "3"], "bad.txt:1: tag column 3 does not exist"),
    ("bad.conllu", "", [], "bad.conllu: no sentences found (empty file?)"),
])
def test_bad_training_input(tmp_path, capsys, name, text, args, message):
    (tmp_path / name).write_text(text)
    code = main(["tag", "train", "--train", str(tmp_path / name), "--out",
                 str(tmp_path / "run"), *args, *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rnnkit: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unseen_tag_at_eval_and_no_partial_output(trained, tmp_path, capsys):
    gold = tmp_path / "gold.txt"
    gold.write_text("the _ X\nabc _ NEW\n")
    capsys.readouterr()
    assert main(["tag", "eval", "--checkpoint", str(trained / "run"), "--data", str(gold)]) == 2
    err = capsys.readouterr().err
    assert f"{gold}:2: tag 'NEW' was never seen in training" in err
    assert main(["tag", "eval", "--checkpoint", str(trained / "run"), "--data", str(gold),
                 "--unknown-labels", "wrong", "--json"]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("the _ X\nabc\n")
    out = tmp_path / "out.txt"
    assert main(["tag", "predict", "--checkpoint", str(trained / "run"), "--input", str(bad),
                 "--output", str(out)]) == 2
    assert "bad.txt:2: expected 3 columns" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob(".out.txt*")) == []


def test_toml_config_and_flag_override(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(synthetic(10, 4))
    (tmp_path / "run.toml").write_text(
        f'[data]\ntrain = "{tmp_path / "t.txt"}"\nmin_freq = 1\n'
        "[model]\nword_dim = 4\nchar_dim = 4\nchar_hidden = 4\nhidden_size = 5\nnum_layers = 1\n"
        "[train]\nmax_steps = 1\nprogress = false\ntensorboard = false\nplot = false\n"
    )
    assert main(["tag", "train", "--config", str(tmp_path / "run.toml"), "--hidden-size", "6",
                 "--out", str(tmp_path / "run")]) == 0
    import json

    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["model"]["hidden_size"] == 6 and config["model"]["embedding_size"] == 4
    assert "word_dim is deprecated; use embedding_size" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("hiden_size = 3\n")
    assert main(["tag", "train", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "unknown option(s): hiden_size" in capsys.readouterr().err


def test_predict_words_from_stdin(trained, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("the\nabc\nfg\n\nabc\n"))
    capsys.readouterr()
    assert main(["tag", "predict", "--checkpoint", str(trained / "run"), "--format",
                 "conll"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if line] == ["the", "abc", "fg", "abc"]
    assert lines[1] == "abc X"  # after "the"
    assert all(line.split()[1] in {"N", "V", "X"} for line in lines if line)


def test_old_flag_names_still_work_with_one_warning(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(synthetic(10, 5))
    assert main(["tag", "train", "--train", str(tmp_path / "t.txt"), "--dev",
                 str(tmp_path / "t.txt"), "--word-dim", "4", "--max-steps", "1", "--out",
                 str(tmp_path / "run"), *TINY[2:]]) == 0
    err = capsys.readouterr().err
    assert err.count("--dev is deprecated; use --valid") == 1
    assert err.count("--word-dim is deprecated; use --embedding-size") == 1
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["model"]["embedding_size"] == 4
    assert saved["options"]["valid"] == str(tmp_path / "t.txt")
