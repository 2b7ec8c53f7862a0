"""Transfer (issue 21, item 3): ``--init-embeddings`` sets exactly the rows of the words a vectors
file holds; ``--init-from`` copies a word LM's embedding rows and recurrent layers (forward LM →
forward direction, backward LM → reverse direction); discriminative rates and gradual unfreezing
do what they say through the Trainer; bad input ends in one clear message and exit 2."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from rnnkit.apps import registry, runner
from rnnkit.apps.base import PrepareContext
from rnnkit.apps.classify import ClassifyConfig
from rnnkit.apps.tag import TagConfig
from rnnkit.cli.main import main
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.data.wordvec import WordVectors, read_vectors, write_vectors
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.models.transfer import LayerSchedule, init_embeddings, layer_groups
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.config import build_config
from rnnkit.train.distributed import Shard

WORDS = ["good", "bad", "film", "plot", "actors", "not", "very", "the", "a", "story"]
QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


def sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(2, 7))] for _ in range(n)]


def labelled(n: int, seed: int) -> str:
    return "".join(f"{'pos' if 'good' in s else 'neg'} {' '.join(s)}\n"
                   for s in sentences(n, seed))


def tagged(n: int, seed: int) -> str:
    return "\n".join("".join(f"{w} {'A' if w in ('good', 'bad') else 'B'}\n" for w in s)
                     for s in sentences(n, seed))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    (root / "train.txt").write_text(labelled(60, 1))
    (root / "dev.txt").write_text(labelled(20, 2))
    (root / "tags.txt").write_text(tagged(30, 3))
    # the LM's text: the same words, and one the classifier never sees ("zebra")
    (root / "corpus.txt").write_text("\n".join(" ".join(s) for s in sentences(200, 4))
                                     + "\nzebra zebra the film\n")
    lm = ["lm", "train", "--train", str(root / "corpus.txt"), "--tokenizer", "word",
          "--embedding-size", "8", "--hidden-size", "6", "--num-layers", "2", "--bptt", "8",
          "--batch-size", "4", "--max-steps", "2", "--eval-every", "0", *QUIET]
    assert main([*lm, "--out", str(root / "lm"), "--bidirectional", "--softmax", "adaptive"]) == 0
    assert main([*lm, "--out", str(root / "lm-forward")]) == 0
    assert main(["lm", "train", "--train", str(root / "corpus.txt"), "--tokenizer", "char",
                 "--embedding-size", "8", "--hidden-size", "6", "--num-layers", "1",
                 "--bptt", "8", "--batch-size", "4", "--max-steps", "1", "--out",
                 str(root / "lm-char"), *QUIET]) == 0
    return root


def build(app_name: str, config_cls, values: dict, tmp_path, seed: int = 0):
    """The application's prepared data and its model built as training builds it."""
    app = registry.get(app_name)
    config = build_config(config_cls, values)
    data = app.prepare(config, PrepareContext(tmp_path, Shard(), None, seed))
    torch.manual_seed(seed)
    return app, config, data, app.build_model(config, data)


def classify_values(files, **extra) -> dict:
    return {"train": str(files / "train.txt"), "valid": str(files / "dev.txt"),
            "embedding_size": 8, "hidden_size": 6, "num_layers": 1, **extra}


def vectors_file(path, words, dim=8, fmt="word2vec", seed=0) -> WordVectors:
    rng = np.random.default_rng(seed)
    vectors = WordVectors(list(words), rng.normal(size=(len(words), dim)).astype(np.float32))
    write_vectors(path, vectors, format=fmt)
    return read_vectors(path)  # as the file holds them (text: 6 significant digits)


# ---------------------------------------------------------------------- --init-embeddings


@pytest.mark.parametrize("fmt", ["word2vec", "glove", "binary"])
def test_init_embeddings_sets_exactly_the_rows_of_known_words(files, tmp_path, capsys, fmt):
    # "FILM" is found case-insensitively for "film"; "zebra" is not in the vocabulary
    vectors = vectors_file(tmp_path / "vec", ["good", "FILM", "zebra", "the"], fmt=fmt)
    _, _, data, plain = build("classify", ClassifyConfig, classify_values(files), tmp_path)
    _, _, _, model = build("classify", ClassifyConfig, classify_values(
        files, init_embeddings=str(tmp_path / "vec")), tmp_path)
    vocab: Vocabulary = data[2]
    expected = {"good": "good", "film": "FILM", "the": "the"}
    for word in vocab.tokens:
        row = model.embedding.weight[vocab.id_of(word)]
        if word in expected:
            torch.testing.assert_close(row, torch.from_numpy(vectors.vector(expected[word])),
                                       rtol=0, atol=0)
        else:  # every other row (and <pad>, <unk>) as the same seed makes it without the file
            torch.testing.assert_close(row, plain.embedding.weight[vocab.id_of(word)],
                                       rtol=0, atol=0)
    words = len(vocab) - 2
    assert f"--init-embeddings: 3 of {words} words found in {tmp_path / 'vec'}" \
        in capsys.readouterr().out
    # the rest of the model is untouched
    torch.testing.assert_close(model.rnn.weight_ih_l0, plain.rnn.weight_ih_l0, rtol=0, atol=0)


def test_init_embeddings_case_rule():
    embedding = torch.nn.Embedding(4, 2)
    vectors = WordVectors(["The", "the", "London"], np.array([[1, 1], [2, 2], [3, 3]], "f4"))
    words = ["<pad>", "The", "london", "THE"]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_vectors(f"{tmp}/v.txt", vectors)
        line = init_embeddings(embedding, words, f"{tmp}/v.txt", specials=("<pad>",))
    # exact first ("The"); else case-insensitive, the file's first such word
    assert embedding.weight[1].tolist() == [1, 1]
    assert embedding.weight[2].tolist() == [3, 3]
    assert embedding.weight[3].tolist() == [1, 1]
    assert "3 of 3 words" in line


def test_init_embeddings_tagger_and_translate(files, tmp_path, capsys):
    vectors = vectors_file(tmp_path / "vec.txt", ["good", "story"], dim=5)
    _, _, data, model = build("tag", TagConfig, {
        "train": str(files / "tags.txt"), "embedding_size": 5, "hidden_size": 4,
        "num_layers": 1, "min_freq": 1, "init_embeddings": str(tmp_path / "vec.txt")}, tmp_path)
    assert "--init-embeddings: 2 of" in capsys.readouterr().out
    words = data[2].words
    torch.testing.assert_close(model.embedding.weight[words.id_of("story")],
                               torch.from_numpy(vectors.vector("story")), rtol=0, atol=0)


def test_translate_init_embeddings_source_and_target(tmp_path, capsys):
    from rnnkit.apps.translate import TranslateConfig

    src = ["der gute film", "ein film", "der film ist gut"] * 4
    tgt = ["the good film", "a film", "the film is good"] * 4
    (tmp_path / "s.txt").write_text("\n".join(src) + "\n")
    (tmp_path / "t.txt").write_text("\n".join(tgt) + "\n")
    en = vectors_file(tmp_path / "en.txt", ["film", "good", "the"], dim=6)
    _, _, data, model = build("translate", TranslateConfig, {
        "train": str(tmp_path / "s.txt"), "train_tgt": str(tmp_path / "t.txt"),
        "tokenizer": "word", "embedding_size": 6, "hidden_size": 4, "eval_bleu": 0,
        "init_embeddings": str(tmp_path / "en.txt")}, tmp_path)
    out = capsys.readouterr().out
    assert "--init-embeddings: 1 of 6 source words" in out  # "film" is also a German word
    assert "--init-embeddings: 3 of 5 target words" in out
    codecs = data[0]
    for word in ("film", "good", "the"):
        row = codecs[1].encode(word)[0]
        torch.testing.assert_close(model.tgt_embedding.weight[row],
                                   torch.from_numpy(en.vector(word)), rtol=0, atol=0)
    torch.testing.assert_close(model.src_embedding.weight[codecs[0].encode("film")[0]],
                               torch.from_numpy(en.vector("film")), rtol=0, atol=0)


# ---------------------------------------------------------------------- --init-from


def test_init_from_copies_the_lm(files, tmp_path, capsys):
    lm = runner.load("lm", files / "lm", "cpu")
    _, _, data, plain = build("classify", ClassifyConfig, classify_values(files), tmp_path)
    _, _, _, model = build("classify", ClassifyConfig, classify_values(
        files, init_from=str(files / "lm")), tmp_path)
    vocab, lm_vocab = data[2], lm.tokenizer.vocab
    for word in vocab.tokens:
        row = model.embedding.weight[vocab.id_of(word)]
        if word == PAD:
            torch.testing.assert_close(row, plain.embedding.weight[vocab.pad_id], rtol=0, atol=0)
        else:  # every word of the task is in the LM's text; <unk> → the LM's <unk>
            source = lm_vocab.id_of(word if word != UNK else UNK)
            torch.testing.assert_close(row, lm.model.embedding.weight[source], rtol=0, atol=0)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        torch.testing.assert_close(getattr(model.rnn, name), getattr(lm.model.rnn, name),
                                   rtol=0, atol=0)
        torch.testing.assert_close(getattr(model.rnn, name + "_reverse"),
                                   getattr(lm.model.rnn_backward, name), rtol=0, atol=0)
    torch.testing.assert_close(model.output.weight, plain.output.weight, rtol=0, atol=0)
    out = capsys.readouterr().out
    assert f"--init-from: {len(vocab) - 2} of {len(vocab) - 2} words found" in out
    assert "recurrent layers copied: 0 (forward LM → forward direction, backward LM → " \
           "reverse direction)" in out


def test_init_from_a_forward_lm_into_a_unidirectional_two_layer_tagger(files, tmp_path, capsys):
    lm = runner.load("lm", files / "lm-forward", "cpu")
    _, _, _, model = build("tag", TagConfig, {
        "train": str(files / "tags.txt"), "embedding_size": 8, "hidden_size": 6,
        "num_layers": 2, "min_freq": 1, "chars": False, "init_from": str(files / "lm-forward")},
        tmp_path)
    # the tagger is bidirectional: layer 1 reads 2H = 12 inputs, the LM's layer 1 reads 6
    torch.testing.assert_close(model.rnn.weight_hh_l0, lm.model.rnn.weight_hh_l0, rtol=0, atol=0)
    assert not torch.equal(model.rnn.weight_hh_l1, lm.model.rnn.weight_hh_l1)
    out = capsys.readouterr().out
    assert "recurrent layers copied: 0 (forward direction; the reverse direction keeps its " \
           "random initialisation" in out
    assert "not copied: layer 1 and up (weight_ih_l1: (24, 12) here, (24, 6) in the LM)" in out


def test_init_from_unidirectional_classifier_takes_both_layers(files, tmp_path):
    lm = runner.load("lm", files / "lm-forward", "cpu")
    _, _, _, model = build("classify", ClassifyConfig, classify_values(
        files, num_layers=2, bidirectional=False, init_from=str(files / "lm-forward")),
        tmp_path)
    for k in (0, 1):
        torch.testing.assert_close(getattr(model.rnn, f"weight_ih_l{k}"),
                                   getattr(lm.model.rnn, f"weight_ih_l{k}"), rtol=0, atol=0)


# ---------------------------------------------------------------------- the schedule


def tiny_classifier(layers: int = 2) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(vocab_size=12, num_classes=2, embedding_size=4,
                                       hidden_size=3, num_layers=layers, pooling="attention"))


def test_layer_groups_by_depth():
    groups = layer_groups(tiny_classifier(2))
    names = [[n for n, _ in g] for g in groups]
    assert names[0] == ["embedding.weight"]
    assert set(names[1]) == {f"rnn.{w}_l0{d}" for w in ("weight_ih", "weight_hh", "bias_ih",
                                                        "bias_hh") for d in ("", "_reverse")}
    assert all(n.endswith(("_l1", "_l1_reverse")) for n in names[2])
    assert names[3] == ["attention.0.weight", "attention.0.bias", "attention.2.weight",
                        "output.weight", "output.bias"]
    schedule = LayerSchedule(2.6, gradual=True)
    scales = [g["lr_scale"] for g in schedule.param_groups(tiny_classifier(2))]
    assert scales == pytest.approx([2.6 ** -3, 2.6 ** -2, 2.6 ** -1, 1.0])
    assert schedule.trainable(4, 0) == [False, False, False, True]
    assert schedule.trainable(4, 2) == [False, True, True, True]
    assert schedule.trainable(4, 5) == [True] * 4
    with pytest.raises(ValueError, match="--layer-lr-decay"):
        LayerSchedule(0.5)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def train_classifier(files, tmp_path, epochs: int, **transfer):
    app, config, data, model = build("classify", ClassifyConfig, classify_values(
        files, num_layers=2, **transfer), tmp_path)
    before = snapshot(model)
    task = app.task(config, data, 0)
    trainer = Trainer(model, task, TrainConfig(max_epochs=epochs, eval_every=0, lr=0.01,
                                               schedule="constant", progress=False,
                                               tensorboard=False, plot=False),
                      tmp_path / f"run{epochs}")
    trainer.fit()
    return model, before, trainer


def test_gradual_unfreezing_through_the_trainer(files, tmp_path):
    model, before, _ = train_classifier(files, tmp_path, 1, gradual_unfreezing=True)
    groups = [{n for n, _ in g} for g in layer_groups(model)]
    assert len(groups) == 4 and groups[3] == {"output.weight", "output.bias"}
    assert changed(before, model) == groups[3]  # epoch 1: the head only, weight decay included
    model, before, _ = train_classifier(files, tmp_path, 2, gradual_unfreezing=True)
    assert changed(before, model) == groups[2] | groups[3]
    model, before, _ = train_classifier(files, tmp_path, 4, gradual_unfreezing=True)
    assert changed(before, model) == set().union(*groups)


def test_discriminative_rates_through_the_trainer(files, tmp_path):
    _, _, trainer = train_classifier(files, tmp_path, 1, layer_lr_decay=2.0)
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([0.01 / 8, 0.01 / 4, 0.01 / 2, 0.01])
    # without the options: the Trainer's one group, as before
    _, _, trainer = train_classifier(files, tmp_path, 1)
    assert len(trainer.optimizer.param_groups) == 1


def test_cli_train_with_init_from_and_schedule(files, tmp_path, capsys):
    assert main(["classify", "train", "--train", str(files / "train.txt"), "--valid",
                 str(files / "dev.txt"), "--out", str(tmp_path / "run"), "--embedding-size",
                 "8", "--hidden-size", "6", "--init-from", str(files / "lm"),
                 "--layer-lr-decay", "2.6", "--gradual-unfreezing", "--max-epochs", "2",
                 "--eval-every", "0", *QUIET]) == 0
    assert "--init-from:" in capsys.readouterr().out
    assert main(["classify", "eval", "--checkpoint", str(tmp_path / "run"), "--data",
                 str(files / "dev.txt")]) == 0


# ---------------------------------------------------------------------- bad input


def bad(files, tmp_path, *extra, app="classify"):
    data = (["--train", str(files / "train.txt"), "--valid", str(files / "dev.txt")]
            if app == "classify" else ["--train", str(files / "tags.txt"), "--min-freq", "1",
                                       "--num-layers", "1", "--no-chars"])
    return main([app, "train", *data, "--out", str(tmp_path / "run"), "--embedding-size", "8",
                 "--hidden-size", "6", "--max-steps", "1", *QUIET, *extra])


@pytest.mark.parametrize("app", ["classify", "tag"])
def test_bad_input_one_clear_message(files, tmp_path, capsys, app):
    vectors_file(tmp_path / "v5.txt", ["good"], dim=5)
    (tmp_path / "ragged.txt").write_text("2 3\ngood 1 2 3\nbad 1 2\n")
    no_vocab = tmp_path / "no-vocab"
    shutil.copytree(files / "lm", no_vocab)
    for sub in ("best", "last"):
        (no_vocab / sub / "tokenizer.json").unlink()
    cases = [
        (["--init-embeddings", str(tmp_path / "missing.txt")],
         f"--init-embeddings {tmp_path / 'missing.txt'}: "),
        (["--init-embeddings", str(tmp_path / "v5.txt")],
         f"--init-embeddings {tmp_path / 'v5.txt'}: the vectors have 5 dimensions, but "
         "--embedding-size is 8; give --embedding-size 5"),
        (["--init-embeddings", str(tmp_path / "ragged.txt")],
         f"{tmp_path / 'ragged.txt'}:3:"),
        (["--init-from", str(tmp_path / "nowhere")], "directory not found"),
        (["--init-from", str(files / "lm-char")],
         "the language model's tokenizer is 'char'; only a word-level LM"),
        (["--init-from", str(no_vocab)], "tokenizer.json is missing"),
        (["--init-from", str(files / "lm"), "--hidden-size", "7"],
         "the LM's hidden-size is 6, --hidden-size is 7; give --hidden-size 6"),
        (["--init-from", str(files / "lm"), "--cell", "gru"],
         "the LM's cell is lstm, the model's --cell is gru; give --cell lstm"),
        (["--init-from", str(files / "lm"), "--init-embeddings", str(tmp_path / "v5.txt")],
         "--init-embeddings and --init-from: give one of them"),
        (["--layer-lr-decay", "0.5"], "--layer-lr-decay"),
        (["--lm-features", str(tmp_path / "nowhere")], "directory not found"),
        (["--lm-features", str(files / "lm"), "--init-from", str(files / "lm")],
         "--init-from and --lm-features: give one of them"),
        (["--lm-features", str(files / "lm-char")],
         f"--lm-features {files / 'lm-char'}: the language model's tokenizer is 'char'; only "
         "a word-level LM"),
    ]
    if app == "tag":  # the same code as classify's: three cases, and the tagger's own
        cases = [cases[1], cases[4], cases[-1]]
        cases.append((["--init-from", str(files / "lm"), "--chars"],
                      "the first recurrent layer does not fit the LM's: (weight_ih_l0: (24, 136) "
                      "here, (24, 8) in the LM) (with --chars it is the embedding and the "
                      "character RNN's states: give --no-chars)"))
    for extra, message in cases:  # a flag given twice: the last one counts
        capsys.readouterr()
        assert bad(files, tmp_path, *extra, app=app) == 2, extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run" / "best").exists()


def test_a_classifier_checkpoint_is_no_lm(files, tmp_path, capsys):
    assert main(["classify", "train", "--train", str(files / "train.txt"), "--out",
                 str(tmp_path / "clf"), "--embedding-size", "8", "--hidden-size", "6",
                 "--max-steps", "1", *QUIET]) == 0
    capsys.readouterr()
    assert bad(files, tmp_path, "--init-from", str(tmp_path / "clf")) == 2
    assert "made by task 'classify', expected a 'lm' checkpoint" in capsys.readouterr().err


def test_init_embeddings_error_is_rnnkit_error(tmp_path):
    vectors_file(tmp_path / "v.txt", ["a"], dim=3)
    with pytest.raises(RnnkitError, match="3 dimensions, but --embedding-size is 2"):
        init_embeddings(torch.nn.Embedding(2, 2), ["<pad>", "a"], tmp_path / "v.txt")


# ---------------------------------------------------------------------- --lm-features


def test_lm_features_copy_the_lm_and_map_each_word(files, tmp_path, capsys):
    lm = runner.load("lm", files / "lm", "cpu")
    _, _, data, model = build("classify", ClassifyConfig, classify_values(
        files, lm_features=str(files / "lm")), tmp_path)
    vocab, lm_vocab, features = data[2], lm.tokenizer.vocab, model.lm_features
    assert model.config.lm_features == lm.model.config.to_json()
    mine = features.state_dict()
    for name, value in lm.model.state_dict().items():
        if name.split(".")[0] in ("embedding", "rnn", "rnn_backward"):
            torch.testing.assert_close(mine[name], value, rtol=0, atol=0)
    expected = [lm_vocab.id_of(w) if w not in vocab.specials else lm_vocab.unk_id
                for w in vocab.tokens]
    assert features.ids.tolist() == expected
    assert features.output_size == 8 + 2 * 6  # the LM's embedding, forward and backward states
    assert model.rnn.input_size == 8 + features.output_size
    assert f"--lm-features: {len(vocab) - 2} of {len(vocab) - 2} words found" in \
        capsys.readouterr().out


@pytest.mark.parametrize("lm_dir", ["lm", "lm-forward"])
def test_lm_features_are_the_lms_contextual_states_whatever_the_padding(files, tmp_path,
                                                                        lm_dir):
    lm = runner.load("lm", files / lm_dir, "cpu")
    _, _, data, model = build("classify", ClassifyConfig, classify_values(
        files, lm_features=str(files / lm_dir)), tmp_path)
    vocab, features = data[2], model.lm_features
    texts = [["the", "good", "film", "not", "very"], ["bad", "plot"], ["a"]]
    lengths = torch.tensor([len(t) for t in texts])
    tokens = torch.full((3, 5), vocab.pad_id)
    for i, text in enumerate(texts):
        tokens[i, :len(text)] = torch.tensor([vocab.id_of(w) for w in text])
    model.train()  # the LM runs as in evaluation all the same (its dropout between layers)
    got = features(tokens, lengths)
    assert got.shape == (3, 5, features.output_size) and not got.requires_grad
    lm.model.eval()
    for i, text in enumerate(texts):
        ids = torch.tensor([lm.tokenizer.vocab.id_of(w) for w in text]).unsqueeze(1)  # (T, 1)
        with torch.no_grad():
            expected = torch.cat(lm.model.contextual(ids), dim=-1)[:, 0]  # (T, F)
        torch.testing.assert_close(got[i, :len(text)], expected, rtol=1e-6, atol=1e-6)


def test_lm_features_stay_frozen_through_the_trainer(files, tmp_path):
    model, before, trainer = train_classifier(files, tmp_path, 1, lm_features=str(files / "lm"))
    frozen = {n for n in before if n.startswith("lm_features.")}
    assert frozen and not frozen & changed(before, model)
    assert changed(before, model) == set(before) - frozen
    assert not any(n.startswith("lm_features.") for g in layer_groups(model) for n, _ in g)
    # with the ULMFiT schedule too: unfreezing never reaches the frozen LM
    model, before, _ = train_classifier(files, tmp_path, 2, lm_features=str(files / "lm"),
                                        gradual_unfreezing=True, layer_lr_decay=2.0)
    assert not {n for n in before if n.startswith("lm_features.")} & changed(before, model)


def test_cli_lm_features_checkpoint_keeps_its_copy_of_the_lm(files, tmp_path, capsys):
    lm = tmp_path / "lm"
    shutil.copytree(files / "lm", lm)
    assert main(["classify", "train", "--train", str(files / "train.txt"), "--valid",
                 str(files / "dev.txt"), "--out", str(tmp_path / "run"), "--embedding-size",
                 "8", "--hidden-size", "6", "--lm-features", str(lm), "--max-epochs", "2",
                 "--eval-every", "0", *QUIET]) == 0
    assert "--lm-features:" in capsys.readouterr().out
    assert main(["classify", "eval", "--checkpoint", str(tmp_path / "run"), "--data",
                 str(files / "dev.txt"), "--json"]) == 0
    before = capsys.readouterr().out
    shutil.rmtree(lm)  # eval and predict need the classifier's checkpoint only
    assert main(["classify", "eval", "--checkpoint", str(tmp_path / "run"), "--data",
                 str(files / "dev.txt"), "--json"]) == 0
    assert capsys.readouterr().out == before
    # the exported graph computes the LM's features too (checked against the model by export)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--format", "torchscript",
                 "--output", str(tmp_path / "clf.pt")]) == 0
    assert "largest difference from rnnkit" in capsys.readouterr().out


def test_tagger_with_forward_lm_features(files, tmp_path, capsys):
    _, _, data, model = build("tag", TagConfig, {
        "train": str(files / "tags.txt"), "embedding_size": 8, "hidden_size": 6,
        "num_layers": 1, "min_freq": 1, "chars": False,
        "lm_features": str(files / "lm-forward")}, tmp_path)
    assert model.lm_features.rnn_backward is None and model.lm_features.output_size == 8 + 6
    assert "(forward LM only" in capsys.readouterr().out
    words = torch.tensor([[data[2].words.id_of("good"), data[2].words.id_of("film")]])
    assert model(words, torch.tensor([2])).shape == (1, 2, len(data[2].tags))
