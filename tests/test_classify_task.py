"""Classification task: a tiny classifier learns a synthetic rule; pooling options; bucketing
does not change predictions; bad input gives one clear message through the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch

from rnnkit.apps.classify import ClassifyConfig
from rnnkit.cli.main import main
from rnnkit.data.classification import read_examples
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import POOLINGS, Classifier, ClassifierConfig
from rnnkit.tasks import classify

TINY = ["--embedding-size", "16", "--hidden-size", "16", "--dropout", "0", "--word-dropout", "0",
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
    code = main(["classify", "train", "--train", str(root / "train.txt"), "--valid",
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
    model = Classifier(ClassifierConfig(vocab_size=30, num_classes=3, embedding_size=6,
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
    model = Classifier(ClassifierConfig(vocab_size=10, num_classes=2, embedding_size=4,
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
    model = Classifier(ClassifierConfig(vocab_size=12, num_classes=2, embedding_size=4,
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
    code = main(["classify", "train", "--train", str(trained / "train.txt"), "--valid",
                 str(trained / "dev.txt"), "--out", str(tmp_path / "run"), "--max-epochs", "1",
                 *TINY, "--embed-dropout", "0.2", "--label-smoothing", "0.1"])
    assert code == 0
    model, _, _, _ = classify.load(str(tmp_path / "run"))
    assert model.config.embed_dropout == 0.2


def test_adversarial_step_adds_the_loss_at_the_worst_nearby_embeddings():
    """With ``adversarial`` ε the step's loss is the clean loss plus the loss at embeddings moved
    by ε (L2 norm per text) along the gradient of the clean loss: recomputed here by hand."""
    from rnnkit.data.classification import Example
    from rnnkit.tasks._labels import label_vocabulary

    torch.manual_seed(0)
    texts = [["w1", "good"], ["not", "good", "w2", "w3"], ["w4"]]
    examples = [Example(" ".join(t), t, label, i + 1)
                for i, (t, label) in enumerate(zip(texts, ["pos", "neg", "neg"]))]
    vocab = Vocabulary.build((e.tokens for e in examples), specials=(PAD, UNK))
    labels = label_vocabulary([e.label for e in examples])
    model_cfg = ClassifierConfig(vocab_size=len(vocab), num_classes=2, embedding_size=5,
                                 hidden_size=4, dropout=0.0, pad_id=vocab.pad_id, pooling="max")
    model = Classifier(model_cfg).eval()  # no dropout: the two passes see the same network
    batch = classify.collate([vocab.encode(t) for t in texts], [1, 0, 0], vocab)
    eps = 0.7
    task = classify.ClassifyTask(ClassifyConfig(word_dropout=0.0, adversarial=eps),
                                 examples, examples, vocab, labels, model_cfg)
    got = task.step(model, batch).loss

    embedded = model.embedding(batch["tokens"]).detach().requires_grad_()

    def loss_at(inputs):  # the classifier from its word embeddings on
        outputs, _ = model.rnn(inputs, lengths=batch["lengths"])
        mask = torch.arange(inputs.shape[1]) < batch["lengths"].unsqueeze(1)
        pooled = outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        return torch.nn.functional.cross_entropy(model.output(pooled), batch["labels"])

    clean = loss_at(embedded)
    (grad,) = torch.autograd.grad(clean, embedded)
    step = eps * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(step.flatten(1).norm(dim=1), torch.full((3,), eps))
    worse = loss_at(embedded.detach() + step)
    assert worse > clean  # the direction raises the loss
    torch.testing.assert_close(got, clean + worse)


def test_adversarial_training_learns_the_rule(trained, tmp_path, capsys):
    assert main(["classify", "train", "--train", str(trained / "train.txt"), "--valid",
                 str(trained / "dev.txt"), "--out", str(tmp_path / "run"), "--max-epochs", "6",
                 *TINY, "--adversarial", "0.5"]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", "--checkpoint", str(tmp_path / "run"), "--data",
                 str(trained / "dev.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.9


def test_torchrun_two_processes_with_adversarial_training(trained, tmp_path):
    """Under torchrun the model is wrapped in DistributedDataParallel (the classifier's step used
    to read an attribute the wrapper lacks), the adversarial step runs two forwards before one
    backward, every rank leaves the process group before exiting, and only the first reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "rnnkit", "classify", "train", "--train",
               str(trained / "train.txt"), "--valid", str(trained / "dev.txt"), "--out",
               str(tmp_path / "run"), "--max-steps", "4", *TINY, "--adversarial", "0.5"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best checkpoint:") == 1
    saved = json.loads((tmp_path / "run/last/config.json").read_text())
    assert saved["step"] == 4


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_bad_adversarial_step_is_refused(tmp_path, trained, capsys, value):
    code = main(["classify", "train", "--train", str(trained / "train.txt"), "--out",
                 str(tmp_path / "run"), *TINY, "--adversarial", value])
    err = capsys.readouterr().err
    expected = ("expected a finite value >= 0" if value == "-1" else "expected a finite number")
    assert code == 2 and f"--adversarial: {expected}, got {float(value)}" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


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
    assert main(["classify", "train", "--train", str(trained / "train.txt"), "--valid",
                 str(trained / "dev.txt"), "--out", str(second), "--max-epochs", "2", *TINY,
                 "--seed", "7"]) == 0
    members, labels, _ = classify.load_ensemble([str(trained / "run"), str(second)])
    examples = read_examples(trained / "dev.txt")
    probs = classify.ensemble_probs(members, examples)
    alone = [classify.predict_probs(m, examples, v, chars=c) for m, v, c in members]
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
    assert main(["classify", "train", "--train", str(other), "--valid", str(other), "--out",
                 str(tmp_path / "other"), "--max-steps", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--checkpoint",
                 str(tmp_path / "other"), "--data", str(trained / "dev.txt")]) == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {tmp_path / 'other'}: its labels (neg, yes) differ" in err




def spelled(n: int, seed: int, stems: list[str]) -> str:
    """``LABEL TEXT`` lines whose label only the spelling tells: pos when the one word built on
    a stem ends in 'ful', neg when it ends in 'less'; dev stems never occur in training."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label, suffix = rng.choice([("pos", "ful"), ("neg", "less")])
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, 3))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(stems) + suffix)
        lines.append(f"{label} {' '.join(words)}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def spelling(tmp_path_factory):
    root = tmp_path_factory.mktemp("chars")
    rng = random.Random(3)
    stems = ["".join(rng.choice("abcdeghikmnoprstuvz") for _ in range(rng.randint(3, 6)))
             for _ in range(80)]
    (root / "train.txt").write_text(spelled(400, 1, stems[:60]))
    (root / "dev.txt").write_text(spelled(100, 2, stems[60:]))
    for name, flags in (("chars", ["--chars", "--char-dim", "8", "--char-hidden", "12",
                                   "--max-word-length", "12"]), ("words", [])):
        assert main(["classify", "train", "--train", str(root / "train.txt"), "--valid",
                     str(root / "dev.txt"), "--out", str(root / name), "--max-epochs", "8",
                     *TINY, *flags]) == 0
    return root


def test_chars_are_off_by_default(trained):
    assert not (trained / "run" / "best" / "chars.json").exists()
    model, _, _, data = classify.load(str(trained / "run"))
    assert model.chars is None and model.config.char_vocab_size == 0 and data["chars"] is None
    saved = json.loads((trained / "run" / "best" / "config.json").read_text())
    assert "max_word_length" not in saved["data"]


def test_checkpoint_from_before_chars_loads(trained, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained / "run" / "best", old)
    saved = json.loads((old / "config.json").read_text())
    for key in ("char_vocab_size", "char_dim", "char_hidden"):
        del saved["model"][key]
    (old / "config.json").write_text(json.dumps(saved))
    model, vocab, _, _ = classify.load(str(old))
    examples = read_examples(trained / "dev.txt")
    reference, ref_vocab, _, _ = classify.load(str(trained / "run"))
    torch.testing.assert_close(classify.predict_probs(model, examples, vocab),
                               classify.predict_probs(reference, examples, ref_vocab))


def test_chars_read_the_spelling_of_unseen_words(spelling, capsys):
    directory = spelling / "chars" / "best"
    assert (directory / "chars.json").exists()
    saved = json.loads((directory / "config.json").read_text())
    assert saved["model"]["char_vocab_size"] > 2 and saved["model"]["char_hidden"] == 12
    assert saved["data"]["max_word_length"] == 12
    model, vocab, _, data = classify.load(str(spelling / "chars"))
    assert model.chars is not None and data["chars"].max_word_length == 12
    examples = read_examples(spelling / "dev.txt")
    assert all(vocab.unk_id in vocab.encode(e.tokens) for e in examples)  # stems unseen
    accuracy = {}
    for name in ("chars", "words"):
        capsys.readouterr()
        assert main(["classify", "eval", "--checkpoint", str(spelling / name), "--data",
                     str(spelling / "dev.txt"), "--json"]) == 0
        accuracy[name] = json.loads(capsys.readouterr().out)["accuracy"]
    assert accuracy["chars"] > 0.9 and accuracy["words"] < 0.75
    bucketed = classify.predict_probs(model, examples, vocab, 7, chars=data["chars"])
    single = classify.predict_probs(model, examples, vocab, 1, bucketed=False,
                                    chars=data["chars"])
    torch.testing.assert_close(bucketed, single, rtol=1e-5, atol=1e-6)
    with pytest.raises(RnnkitError, match="reads characters"):
        classify.predict_probs(model, examples, vocab)


def test_chars_predict_and_mixed_ensemble(spelling, tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("w1 zzqful w2\nzzqless w3\n"))
    capsys.readouterr()
    assert main(["classify", "predict", "--checkpoint", str(spelling / "chars"),
                 "--output-format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["label"] for row in rows] == ["pos", "neg"]
    members, labels, _ = classify.load_ensemble([str(spelling / "chars"),
                                                 str(spelling / "words")])
    assert members[0][2] is not None and members[1][2] is None
    examples = read_examples(spelling / "dev.txt")
    probs = classify.ensemble_probs(members, examples)
    alone = [classify.predict_probs(m, examples, v, chars=c) for m, v, c in members]
    torch.testing.assert_close(probs, (alone[0] + alone[1]) / 2)
    out_file = tmp_path / "pred.jsonl"
    assert main(["classify", "predict", "--checkpoint", str(spelling / "chars"), "--checkpoint",
                 str(spelling / "words"), "--input", str(spelling / "dev.txt"), "--format",
                 "label-text", "--output", str(out_file), "--output-format", "jsonl"]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [row["probabilities"]["pos"] for row in rows] == pytest.approx(
        probs[:, labels.id_of("pos")].tolist(), abs=1e-5)


def test_word_dropout_never_changes_the_characters():
    batch = classify.collate([[5, 6], [7]], [0, 1], Vocabulary.build([], specials=(PAD, UNK)),
                             word_dropout=0.99, singles=frozenset({5, 6, 7}),
                             rng=random.Random(0), char_ids=[[[2, 3, 4], [5]], [[6, 7]]])
    assert batch["tokens"].tolist() == [[1, 1], [1, 0]]
    assert batch["chars"].tolist() == [[[2, 3, 4], [5, 0, 0]], [[6, 7, 0], [0, 0, 0]]]
    assert batch["char_lengths"].tolist() == [[3, 1], [2, 0]]


def test_classifier_with_chars_needs_them():
    model = Classifier(ClassifierConfig(vocab_size=10, num_classes=2, embedding_size=4,
                                        hidden_size=3, char_vocab_size=8, char_dim=3,
                                        char_hidden=2, pooling="max", dropout=0.0)).eval()
    assert model.chars.output_size == 4
    tokens, lengths = torch.tensor([[2, 3, 0]]), torch.tensor([2])
    chars = torch.tensor([[[2, 3], [4, 0], [0, 0]]])
    char_lengths = torch.tensor([[2, 1, 0]])
    assert model(tokens, lengths, chars, char_lengths).shape == (1, 2)
    with pytest.raises(ValueError, match="chars, char_lengths: required"):
        model(tokens, lengths)
    with pytest.raises(ValueError, match="char_hidden: expected an integer >= 1"):
        ClassifierConfig(vocab_size=10, num_classes=2, char_vocab_size=8, char_hidden=0)


def test_confusion_png_into_a_directory_is_a_clear_error(trained, tmp_path, capsys):
    assert main(["classify", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "dev.txt"), "--confusion-png", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--confusion-png {tmp_path}: cannot write" in err and "Traceback" not in err
