"""rnnkit recommend through the command line: learning an item cycle, eval, predict, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import rnnkit.apps.recommend  # noqa: F401 - registers "recommend"
from rnnkit.cli.main import main

QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]
SMALL = ["--embedding-size", "16", "--hidden-size", "32", "--batch-size", "32", "--lr", "1e-2",
         "--valid-negatives", "10", "--eval-every", "0"]
CYCLE = 20


def _cycle_log(path: Path, users: int, seed: int, single: int = 0) -> Path:
    """Users walking a fixed cycle of items (next = previous + 1 mod 20), and ``single``
    users with one action."""
    rng = random.Random(seed)
    lines = []
    for user in range(users):
        start = rng.randrange(CYCLE)
        lines += [f"u{user}\tit{(start + t) % CYCLE}" for t in range(rng.randint(5, 12))]
    lines += [f"s{user}\tit{user % CYCLE}" for user in range(single)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("recommend")
    data = _cycle_log(directory / "cycle.tsv", 300, 1, single=7)
    out = directory / "run"
    code = main(["recommend", "train", "--train", str(data), "--out", str(out),
                 "--max-epochs", "8", "--negatives", "0", *SMALL, *QUIET])
    assert code == 0
    return data, out


def _eval(capsys, out: Path, *extra: str) -> dict:
    assert main(["recommend", "eval", "--checkpoint", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_model_learns_the_item_cycle(trained, capsys):
    data, out = trained
    full = _eval(capsys, out, "--protocol", "full", "--cutoffs", "1")
    assert full["recall@1"] > 0.95
    assert full["users"] == 300 and full["users_skipped"] == 7  # single actions counted
    sampled = _eval(capsys, out, "--data", str(data), "--negatives", "15", "--cutoffs", "1,5")
    assert sampled["hr@1"] > 0.95 and sampled["ndcg@5"] > 0.95
    saved = json.loads((out / "best" / "items.json").read_text())
    assert len(saved["items"]) == CYCLE and sum(saved["counts"]) > 0


def test_baselines_use_the_same_evaluation(trained, capsys):
    _, out = trained
    cooc = _eval(capsys, out, "--scorer", "cooccurrence", "--protocol", "full", "--cutoffs", "1")
    popular = _eval(capsys, out, "--scorer", "popular", "--protocol", "full", "--cutoffs", "1")
    assert cooc["recall@1"] == 1.0  # the cycle is a pure transition rule
    assert popular["recall@1"] < 0.3


def test_predict_continues_the_cycle_and_reports_unknown_items(trained, tmp_path, capsys):
    _, out = trained
    assert main(["recommend", "predict", "--checkpoint", str(out), "--history",
                 "it3 it4 nosuch", "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split()[0] == "it5"
    assert "--history: unknown item(s) skipped: nosuch" in captured.err
    histories = tmp_path / "histories.txt"
    histories.write_text("it17 it18\nit18 it19 it0\nghost\n")
    target = tmp_path / "top.txt"
    assert main(["recommend", "predict", "--checkpoint", str(out), "--input", str(histories),
                 "--output", str(target), "--top-k", "2"]) == 0
    lines = target.read_text().splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["it19", "it1"]
    assert len(lines) == 3 and len(lines[2].split()) == 2  # popular items for an empty history
    assert f"{histories}:3: no known item" in capsys.readouterr().err


def test_predict_leaves_seen_items_out_unless_asked(trained, capsys):
    _, out = trained
    history = " ".join(f"it{i}" for i in range(CYCLE - 1))  # all but it19
    assert main(["recommend", "predict", "--checkpoint", str(out), "--history", history,
                 "--top-k", "5"]) == 0
    assert capsys.readouterr().out.split() == ["it19"]  # the only unseen item
    assert main(["recommend", "predict", "--checkpoint", str(out), "--history", "it7",
                 "--top-k", "3", "--include-seen", "--scores"]) == 0
    pieces = capsys.readouterr().out.split()
    assert len(pieces) == 3 and pieces[0].startswith("it8:")


@pytest.mark.parametrize("loss", ["bpr-max", "top1-max", "ce"])
def test_sampled_losses_learn(tmp_path, capsys, loss):
    data = _cycle_log(tmp_path / "cycle.tsv", 200, 2)
    out = tmp_path / loss
    assert main(["recommend", "train", "--train", str(data), "--out", str(out), "--loss", loss,
                 "--negatives", "8", "--max-epochs", "8", "--cell", "lstm", *SMALL,
                 "--batch-size", "16", *QUIET]) == 0
    capsys.readouterr()
    value = _eval(capsys, out, "--protocol", "full", "--cutoffs", "1")["recall@1"]
    assert value > 0.9


def test_time_split_from_a_shuffled_timestamped_file(tmp_path, capsys):
    rng = random.Random(4)
    rows = []
    for user in range(150):
        start = rng.randrange(CYCLE)
        rows += [(f"u{user}", f"it{(start + t) % CYCLE}", 1000 + 10 * t + user % 7)
                 for t in range(rng.randint(6, 10))]
    rng.shuffle(rows)
    data = tmp_path / "log.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    out = tmp_path / "run"
    assert main(["recommend", "train", "--train", str(data), "--out", str(out), "--split", "time",
                 "--max-epochs", "8", "--negatives", "0", *SMALL, "--batch-size", "16",
                 *QUIET]) == 0
    capsys.readouterr()
    metrics = _eval(capsys, out, "--protocol", "full", "--cutoffs", "1")
    assert metrics["recall@1"] > 0.9 and metrics["users"] > 50


@pytest.mark.parametrize("text, message", [
    ("u1\ta\nu1\tb\tc\td\n", ":2: expected 2 fields like the first line, got 4"),
    ("u1 a 5\nu1 b yesterday\n", ":2: timestamp 'yesterday' is not an integer"),
    ("", ":1: no interactions in the file (empty)"),
    ("u1 a\nu2 b\nu3 c\n", "no user has two training actions"),
])
def test_bad_training_files_name_file_and_line(tmp_path, capsys, text, message):
    data = tmp_path / "bad.txt"
    data.write_text(text)
    out = tmp_path / "run"
    assert main(["recommend", "train", "--train", str(data), "--out", str(out), *QUIET]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_options_are_named(trained, tmp_path, capsys):
    data, out = trained
    assert main(["recommend", "train", "--train", str(data), "--out", str(tmp_path / "r"),
                 "--loss", "bpr-max", "--negatives", "0"]) == 2
    assert "--loss bpr-max: needs sampled negatives" in capsys.readouterr().err
    assert main(["recommend", "predict", "--checkpoint", str(out)]) == 2
    assert "--history or --input: give exactly one" in capsys.readouterr().err
    assert main(["recommend", "predict", "--checkpoint", str(out), "--input",
                 str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o.txt")]) == 2
    assert "missing.txt: cannot read" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()
    assert main(["recommend", "eval", "--checkpoint", str(out), "--cutoffs", "ten"]) == 2
    assert "--cutoffs: expected integers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_eval_on_another_file_counts_unknown_items(trained, tmp_path, capsys):
    _, out = trained
    other = tmp_path / "other.tsv"
    other.write_text("a\tit1\na\tit2\na\tit3\nb\tit1\nb\tnew\nb\tit2\nb\tit3\n"
                     "c\tit4\nc\tit5\nc\tmystery\n")
    metrics = _eval(capsys, out, "--data", str(other), "--protocol", "full", "--cutoffs", "1")
    assert metrics["users"] == 2 and metrics["unknown_items"] == 2
    assert metrics["unknown_cases"] == 1  # c's test item is unknown
    assert metrics["recall@1"] == 1.0


def test_ensemble_ranks_by_the_mean_log_softmax(trained, tmp_path, capsys):
    import torch

    from rnnkit.apps.recommend_task import ensemble_scorer
    from rnnkit.models.recommender import Recommender, RecommenderConfig

    torch.manual_seed(0)
    models = [Recommender(CYCLE + 1, RecommenderConfig(embedding_size=8, hidden_size=8)).eval()
              for _ in range(2)]
    histories = [[1, 2, 3], [7]]
    items = torch.tensor([[1, 2, 3], [7, 0, 0]])
    lengths = torch.tensor([3, 1])
    with torch.no_grad():
        expected = sum(torch.log_softmax(m.score_all(items, lengths), -1) for m in models) / 2
        alone = models[0].score_all(items, lengths)
    assert torch.allclose(ensemble_scorer([(m, 50) for m in models])(histories), expected)
    assert torch.equal(ensemble_scorer([(models[0], 50)])(histories), alone)  # raw scores

    data, out = trained
    second = tmp_path / "second"
    assert main(["recommend", "train", "--train", str(data), "--out", str(second), "--seed", "7",
                 "--max-epochs", "8", "--negatives", "0", *SMALL, *QUIET]) == 0
    capsys.readouterr()
    both = _eval(capsys, out, "--checkpoint", str(second), "--protocol", "full", "--cutoffs", "1")
    assert both["recall@1"] > 0.95

    other = _cycle_log(tmp_path / "other.tsv", 60, 3)
    other.write_text(other.read_text().replace("\tit", "\tx"))  # other item ids
    third = tmp_path / "third"
    assert main(["recommend", "train", "--train", str(other), "--out", str(third),
                 "--max-epochs", "1", "--negatives", "0", *SMALL, *QUIET]) == 0
    capsys.readouterr()
    assert main(["recommend", "eval", "--checkpoint", str(out), "--checkpoint", str(third)]) == 2
    assert "item ids (items.json) differs" in capsys.readouterr().err
