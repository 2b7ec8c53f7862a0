"""Classification task: a tiny classifier learns a synthetic rule; pooling options; bucketing
does not change predictions; bad input gives one clear message through the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data.classification import read_examples
from rnnkit.models.classifier import POOLINGS, Classifier, ClassifierConfig
from rnnkit.tasks import classify

TINY = ["--embed-dim", "16", "--hidden-size", "16", "--dropout", "0", "--word-dropout", "0",
        "--batch-size", "16", "--lr", "0.02", "--eval-every", "0", "--no-progress",
        "--no-tensorboard", "--no-plot", "--weight-decay", "0"]
WORDS = ["w" + str(i) for i in range(12)]


def synthetic(n: int, seed: int) -> str:
    """``LABEL TEXT`` lines: pos when 'good' occurs and 'not' does not, else neg."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        for marker in ("good", "not"):
            if rng.random() < 0.5:
                words.insert(rng.randrange(len(words) + 1), marker)
        label = "pos" if "good" in words and "not" not in words else "neg"
        lines.append(f"{label} {' '.join(words)}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    (root / "train.txt").write_text(synthetic(300, 1))
    (root / "dev.txt").write_text(synthetic(100, 2))
    code = main(["classify", "train", "--train", str(root / "train.txt"), "--dev",
                 str(root / "dev.txt"), "--out", str(root / "run"), "--max-epochs", "6", *TINY])
    assert code == 0
    return root


def test_classifier_learns_the_rule(trained, capsys, tmp_path):
    capsys.readouterr()
    png = tmp_path / "cm.png"
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "dev.txt"), "--json", "--confusion-png", str(png)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 0.95 and result["macro_f1"] > 0.9
    assert result["labels"] == ["neg", "pos"] and sum(map(sum, result["confusion"])) == 100
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "dev.txt")]) == 0
    assert "confusion matrix" in capsys.readouterr().out


def test_predict_from_stdin_with_probabilities(trained, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("w1 good w2\nnot good w3\n"))
    capsys.readouterr()
    assert main(["classify", "predict", "--checkpoint", str(trained / "run"),
                 "--output-format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["label"] for row in rows] == ["pos", "neg"]
    assert [row["text"] for row in rows] == ["w1 good w2", "not good w3"]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-4 for row in rows)


def test_predict_labelled_file_to_tsv(trained, tmp_path):
    out = tmp_path / "pred.tsv"
    assert main(["classify", "predict", "--checkpoint", str(trained / "run"), "--input",
                 str(trained / "dev.txt"), "--format", "label-text", "--output", str(out)]) == 0
    source = (trained / "dev.txt").read_text().splitlines()
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert [row[2] for row in rows] == [line.split(" ", 1)[1] for line in source]
    assert all(0.5 <= float(row[1]) <= 1.0 for row in rows)


def test_bucketed_and_unbucketed_predictions_agree(trained):
    model, vocab, _, data = classify.load(str(trained / "run"))
    examples = read_examples(trained / "dev.txt")
    bucketed = classify.predict_probs(model, examples, vocab, 7, bucketed=True)
    plain = classify.predict_probs(model, examples, vocab, 7, bucketed=False)
    single = classify.predict_probs(model, examples, vocab, 1, bucketed=False)
    torch.testing.assert_close(bucketed, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bucketed, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_the_representation(pooling, bidirectional):
    model = Classifier(ClassifierConfig(vocab_size=30, num_classes=3, embed_dim=6,
                                        hidden_size=5, num_layers=2, pooling=pooling,
                                        bidirectional=bidirectional, dropout=0.0)).eval()
    tokens = torch.randint(2, 30, (3, 7))
    lengths = torch.tensor([7, 3, 1])
    batch = model.encode(tokens, lengths)
    assert batch.shape == (3, 5 * (2 if bidirectional else 1))
    for b, n in enumerate(lengths.tolist()):
        alone = model.encode(tokens[b : b + 1, :n], lengths[b : b + 1])
        torch.testing.assert_close(batch[b], alone[0], rtol=1e-5, atol=1e-6)


def test_last_pooling_is_the_final_hidden_state():
    model = Classifier(ClassifierConfig(vocab_size=10, num_classes=2, embed_dim=4,
                                        hidden_size=3, bidirectional=True, dropout=0.0)).eval()
    tokens = torch.randint(2, 10, (1, 5))
    outputs, _ = model.rnn(model.embedding(tokens))  # (1, 5, 6)
    expected = torch.cat([outputs[0, -1, :3], outputs[0, 0, 3:]])
    torch.testing.assert_close(model.encode(tokens, torch.tensor([5]))[0], expected)


@pytest.mark.parametrize("name, text, args, message", [
    ("e.txt", "", [], "e.txt: no examples found (empty file?)"),
    ("d.tsv", "text\tlabel\nhello\tpos\n", ["--text-column", "text", "--label-column", "stars"],
     "d.tsv:1: --label-column 'stars' is not in the header (columns: text, label)"),
    ("d.tsv", "pos\thello\nneg\n", [], "d.tsv:2: --text-column 2 does not exist"),
    ("d.jsonl", '{"text": "a"}\n', [], "d.jsonl:1: no label field 'label'"),
    ("s.txt", "pos good\nneg\n", [], "s.txt:2: expected 'LABEL TEXT', got only 'neg'"),
])
def test_bad_training_input(tmp_path, capsys, name, text, args, message):
    (tmp_path / name).write_text(text)
    code = main(["classify", "train", "--train", str(tmp_path / name), "--out",
                 str(tmp_path / "run"), *args, *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rnnkit: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unseen_label_at_eval(trained, tmp_path, capsys):
    gold = tmp_path / "gold.txt"
    gold.write_text("pos w1 good\nmaybe w2\n")
    capsys.readouterr()
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(gold)]) == 2
    assert f"{gold}:2: label 'maybe' was never seen in training" in capsys.readouterr().err
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data", str(gold),
                 "--unknown-labels", "wrong", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == ["maybe", "neg", "pos"] and result["accuracy"] <= 0.5


def test_embed_dropout_drops_whole_word_types():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(vocab_size=12, num_classes=2, embed_dim=4,
                                        hidden_size=3, dropout=0.0, embed_dropout=0.5))
    seen = []
    model.rnn.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    tokens = torch.tensor([[2, 3, 2, 4, 3, 2], [4, 4, 2, 3, 5, 5]])
    lengths = torch.tensor([6, 6])
    table = model.embedding.weight.detach()
    kept_somewhere = dropped_somewhere = False
    for _ in range(5):
        model.train()
        model.encode(tokens, lengths)
        inputs = seen.pop()  # (B, T, E)
        choice = {}
        for b, t in ((b, t) for b in range(2) for t in range(6)):
            token = int(tokens[b, t])
            kept = bool(inputs[b, t].abs().sum() > 0)
            expected = 2 * table[token] if kept else torch.zeros(4)
            torch.testing.assert_close(inputs[b, t], expected)
            assert choice.setdefault(token, kept) == kept  # every occurrence alike
            kept_somewhere |= kept
            dropped_somewhere |= not kept
    assert kept_somewhere and dropped_somewhere
    model.eval()
    model.encode(tokens, lengths)
    torch.testing.assert_close(seen.pop(), table[tokens])


def test_embed_dropout_and_label_smoothing_train_and_are_saved(tmp_path, trained):
    code = main(["classify", "train", "--train", str(trained / "train.txt"), "--dev",
                 str(trained / "dev.txt"), "--out", str(tmp_path / "run"), "--max-epochs", "1",
                 *TINY, "--embed-dropout", "0.2", "--label-smoothing", "0.1"])
    assert code == 0
    model, _, _, _ = classify.load(str(tmp_path / "run"))
    assert model.config.embed_dropout == 0.2


@pytest.mark.parametrize("flag, value", [("--embed-dropout", "1.0"),
                                         ("--label-smoothing", "-0.1")])
def test_bad_regularisation_values(tmp_path, trained, capsys, flag, value):
    code = main(["classify", "train", "--train", str(trained / "train.txt"), "--out",
                 str(tmp_path / "run"), *TINY, flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag}: expected a value in [0, 1), got {float(value)}" in err
    assert "Traceback" not in err


def test_ensemble_eval_and_predict(trained, tmp_path, capsys):
    second = tmp_path / "second"
    assert main(["classify", "train", "--train", str(trained / "train.txt"), "--dev",
                 str(trained / "dev.txt"), "--out", str(second), "--max-epochs", "2", *TINY,
                 "--seed", "7"]) == 0
    members, labels, _ = classify.load_ensemble([str(trained / "run"), str(second)])
    examples = read_examples(trained / "dev.txt")
    probs = classify.ensemble_probs(members, examples)
    alone = [classify.predict_probs(m, examples, v) for m, v in members]
    torch.testing.assert_close(probs, (alone[0] + alone[1]) / 2)
    capsys.readouterr()
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--checkpoint",
                 str(second), "--data", str(trained / "dev.txt")]) == 0
    out = capsys.readouterr().out
    assert "100 examples (ensemble of 2)" in out
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--checkpoint",
                 str(trained / "run"), "--data", str(trained / "dev.txt"), "--json"]) == 0
    twice = json.loads(capsys.readouterr().out)
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "dev.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == twice["accuracy"]
    out_file = tmp_path / "pred.jsonl"
    assert main(["classify", "predict", "--checkpoint", str(trained / "run"), "--checkpoint",
                 str(second), "--input", str(trained / "dev.txt"), "--format", "label-text",
                 "--output", str(out_file), "--output-format", "jsonl"]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [row["probabilities"]["pos"] for row in rows] == pytest.approx(
        probs[:, labels.id_of("pos")].tolist(), abs=1e-5)


def test_ensemble_needs_the_same_labels(trained, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text((trained / "train.txt").read_text().replace("pos ", "yes "))
    assert main(["classify", "train", "--train", str(other), "--dev", str(other), "--out",
                 str(tmp_path / "other"), "--max-steps", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--checkpoint",
                 str(tmp_path / "other"), "--data", str(trained / "dev.txt")]) == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {tmp_path / 'other'}: its labels (neg, yes) differ" in err


