"""rnnkit vectors: the word-vector file formats, the similarity/analogy maths, the PPMI-SVD
baseline, the word-LM options (adaptive and sampled softmax, bidirectional) and the command
line."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.wordvec import WordVectors, detect_format, read_vectors, write_vectors
from rnnkit.errors import RnnkitError


def _vectors(n: int = 5, dim: int = 4, seed: int = 0) -> WordVectors:
    rng = np.random.default_rng(seed)
    words = ["the", "king", "queen", "café", "x_y"][:n] + [f"w{i}" for i in range(max(0, n - 5))]
    return WordVectors(words, rng.standard_normal((n, dim)).astype(np.float32))


# ---------------------------------------------------------------------- file formats


@pytest.mark.parametrize("fmt", ["word2vec", "glove", "binary"])
def test_round_trip_each_format(tmp_path, fmt):
    vec = _vectors()
    path = tmp_path / f"v.{fmt}"
    write_vectors(path, vec, format=fmt)
    assert detect_format(path) == fmt
    back = read_vectors(path)
    assert back.words == vec.words
    assert back.index == {w: i for i, w in enumerate(vec.words)}
    assert back.matrix.dtype == np.float32 and back.matrix.shape == (5, 4)
    tol = 0 if fmt == "binary" else 1e-5
    np.testing.assert_allclose(back.matrix, vec.matrix, rtol=tol, atol=tol)
    forced = read_vectors(path, format=fmt)
    assert forced.words == vec.words


def test_limit_reads_the_first_vectors_only(tmp_path):
    vec = _vectors(8)
    for fmt in ("word2vec", "binary", "glove"):
        path = tmp_path / f"v.{fmt}"
        write_vectors(path, vec, format=fmt)
        back = read_vectors(path, limit=3)
        assert back.words == vec.words[:3]
        assert back.matrix.shape == (3, 4)


def test_binary_without_trailing_newlines_as_gensim_writes(tmp_path):
    vec = _vectors()
    data = b"5 4\n" + b"".join(w.encode() + b" " + r.astype("<f4").tobytes()
                                for w, r in zip(vec.words, vec.matrix))
    (tmp_path / "g.bin").write_bytes(data)
    back = read_vectors(tmp_path / "g.bin")
    assert back.words == vec.words
    np.testing.assert_array_equal(back.matrix, vec.matrix)


def test_duplicate_word_keeps_the_first(tmp_path):
    (tmp_path / "d.txt").write_text("a 1 2\nb 3 4\na 5 6\n")
    back = read_vectors(tmp_path / "d.txt")
    assert back.words == ["a", "b"]
    np.testing.assert_array_equal(back.vector("a"), [1, 2])


def _error(path, **kw) -> str:
    with pytest.raises(RnnkitError) as info:
        read_vectors(path, **kw)
    return str(info.value)


def test_bad_files_name_file_and_line(tmp_path):
    p = tmp_path / "dims.txt"
    p.write_text("3 2\na 1 2\nb 1 2 3\nc 4 5\n")
    assert _error(p) == f"{p}:3: 3 values for 'b', expected 2 (as the header)"
    p = tmp_path / "dims.glove"
    p.write_text("a 1 2\nb 1 2\nc 1\n")
    assert _error(p) == f"{p}:3: 1 values for 'c', expected 2 (as line 1)"
    p = tmp_path / "lies.txt"
    p.write_text("5 2\na 1 2\nb 1 2\n")
    assert _error(p) == f"{p}:1: header says 5 vectors, the file has 2"
    p.write_text("1 2\na 1 2\nb 1 2\n")
    assert _error(p) == f"{p}:1: header says 1 vectors, the file has 2"
    p = tmp_path / "utf.txt"
    p.write_bytes(b"2 2\na 1 2\nb\xff\xfe 1 2\n")
    assert _error(p).startswith(f"{p}:3: word b'b\\xff\\xfe' is not valid UTF-8")
    p = tmp_path / "empty.txt"
    p.write_text("")
    assert _error(p) == f"{p}: empty file, expected word vectors"
    p.write_text("\n \n")
    assert _error(p) == f"{p}: empty file, expected word vectors"
    p = tmp_path / "nan.txt"
    p.write_text("a 1 2\nb 1 zz\n")
    assert _error(p) == f"{p}:2: value 'zz' is not a number"
    p = tmp_path / "only_header.txt"
    p.write_text("3 4\n")
    assert "no vectors" in _error(p)
    assert "is a directory" in _error(tmp_path)


def test_bad_binary_files(tmp_path):
    vec = _vectors()
    good = tmp_path / "v.bin"
    write_vectors(good, vec, format="binary")
    data = good.read_bytes()
    lies = tmp_path / "lies.bin"
    lies.write_bytes(b"6 4\n" + data[4:])
    assert _error(lies) == f"{lies}:1: header says 6 vectors of dimension 4, the file has 5"
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-10])
    assert _error(short).startswith(f"{short}:record 5: file ends inside the vector of 'x_y'")
    utf = tmp_path / "utf.bin"
    utf.write_bytes(b"1 2\n\xff\xfe " + np.ones(2, "<f4").tobytes() + b"\n")
    assert _error(utf).startswith(f"{utf}:record 1: word b'\\xff\\xfe' is not valid UTF-8")


def test_write_refuses_words_with_spaces_and_writes_nothing(tmp_path):
    vec = WordVectors(["a b", "c"], np.zeros((2, 3)))
    with pytest.raises(RnnkitError, match="white space"):
        write_vectors(tmp_path / "o.txt", vec)
    assert not (tmp_path / "o.txt").exists()


# gensim's no_header reader leaves a file open
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_gensim_reads_rnnkit_files_and_rnnkit_reads_gensim_files(tmp_path):
    models = pytest.importorskip("gensim.models")
    vec = _vectors(6)
    for fmt, binary in (("word2vec", False), ("binary", True)):
        path = tmp_path / f"r.{fmt}"
        write_vectors(path, vec, format=fmt)
        kv = models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
        assert list(kv.index_to_key) == vec.words
        np.testing.assert_allclose(kv.vectors, vec.matrix, rtol=1e-5, atol=1e-6)
        kv.save_word2vec_format(str(tmp_path / f"g.{fmt}"), binary=binary)
        back = read_vectors(tmp_path / f"g.{fmt}")
        assert back.words == vec.words
        np.testing.assert_allclose(back.matrix, vec.matrix, rtol=1e-5, atol=1e-6)
    glove = tmp_path / "r.glove"
    write_vectors(glove, vec, format="glove")
    kv = models.KeyedVectors.load_word2vec_format(str(glove), no_header=True)
    assert list(kv.index_to_key) == vec.words


# ---------------------------------------------------------------------- maths


def test_spearman_against_hand_made_examples():
    from rnnkit.models.wordvec import rank_average, spearman

    # no ties: d = (0, 1, 1, 0), rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties get average ranks: x ranks (1, 2.5, 2.5, 4), rho = 4.5 / sqrt(4.5 * 5)
    assert rank_average([1, 2, 2, 3]).tolist() == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1], [2]))


def test_evaluate_pairs_on_hand_made_vectors():
    from rnnkit.data.wordvec import SimilarityPair
    from rnnkit.models.wordvec import evaluate_pairs

    angle = np.deg2rad([0, 10, 45, 90, 170])  # cosines with "a" fall in this order
    vec = WordVectors(["a", "b", "c", "d", "e"], np.stack([np.cos(angle), np.sin(angle)], 1))
    pairs = [SimilarityPair("a", "b", 9.0), SimilarityPair("A", "c", 7.0),  # case folded
             SimilarityPair("a", "d", 8.0), SimilarityPair("a", "e", 1.0),
             SimilarityPair("a", "zz", 5.0)]  # not covered
    score = evaluate_pairs(vec, pairs, "hand")
    assert (score.pairs, score.covered) == (5, 4)
    assert score.oov_ratio == pytest.approx(20.0)
    # model ranks (4, 3, 2, 1) against gold ranks (4, 2, 3, 1): d^2 = 2, rho = 1 - 12/60
    assert score.spearman == pytest.approx(0.8)
    strict = evaluate_pairs(vec, pairs, "hand", case_insensitive=False)
    assert strict.covered == 3


def test_neighbours_and_analogy_maths():
    from rnnkit.models.wordvec import analogy, neighbours

    words = ["king", "queen", "man", "woman", "apple"]
    m = np.array([[1, 1, 0], [1, -1, 0], [0, 1, 0.1], [0, -1, 0.1], [0, 0, 1]], np.float32)
    vec = WordVectors(words, m)
    assert neighbours(vec, "king", 2)[0][0] in ("man", "queen")
    assert [w for w, _ in neighbours(vec, "apple", 4)][-1] != "apple"  # itself left out
    assert analogy(vec, "king", "man", "woman")[0][0] == "queen"
    with pytest.raises(KeyError):
        analogy(vec, "king", "man", "nobody")


# gensim's evaluate_word_pairs leaves its file open
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_evaluate_gives_gensims_numbers(tmp_path):
    models = pytest.importorskip("gensim.models")
    from rnnkit.data.wordvec import read_pairs
    from rnnkit.models.wordvec import evaluate_pairs

    rng = np.random.default_rng(3)
    words = ["The", "the", "cat", "Dog", "car", "tree", "sun", "moon", "river", "sea"]
    vec = WordVectors(words, rng.standard_normal((10, 8)).astype(np.float32))
    write_vectors(tmp_path / "v.txt", vec)
    lines, pool = [], ["the", "cat", "dog", "car", "tree", "sun", "moon", "river", "sea", "zz"]
    for _ in range(40):
        a, b = rng.choice(pool, 2, replace=False)
        lines.append(f"{a}\t{b}\t{rng.integers(0, 5)}")  # integer scores: ties
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    kv = models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    _, (rho, _), oov = kv.evaluate_word_pairs(str(tmp_path / "pairs.txt"))
    ours = evaluate_pairs(read_vectors(tmp_path / "v.txt"), read_pairs(tmp_path / "pairs.txt"))
    assert ours.spearman == pytest.approx(rho, abs=1e-6)
    assert ours.oov_ratio == pytest.approx(oov)
    assert 0 < ours.covered < ours.pairs


def test_ppmi_svd_puts_planted_synonyms_together():
    from rnnkit.models.wordvec import neighbours, ppmi_svd

    words, sentences = _planted(1500, seed=1)
    ids = {w: i for i, w in enumerate(sorted({w for s in sentences for w in s}))}
    matrix = ppmi_svd([[ids[w] for w in s] for s in sentences], len(ids), dim=8, window=2)
    vec = WordVectors(sorted(ids, key=ids.get), matrix)
    for a, b in (("big", "large"), ("cat", "dog"), ("car", "truck")):
        assert neighbours(vec, a, 1)[0][0] == b


# ---------------------------------------------------------------------- corpora


def _planted(count: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Sentences where big/large, cat/dog and car/truck are used in the same contexts."""
    import random

    rng = random.Random(seed)
    groups = {"size": (["big", "large"], ["house", "tree", "rock", "hill"]),
              "pet": (["cat", "dog"], ["barks", "meows", "sleeps", "eats"]),
              "vehicle": (["car", "truck"], ["drives", "parks", "honks", "stops"])}
    sentences = []
    for _ in range(count):
        words, contexts = groups[rng.choice(sorted(groups))]
        sentences.append([rng.choice(["the", "a", "one"]), rng.choice(words),
                          rng.choice(contexts), rng.choice(["here", "there", "now"]), "."])
    return ["big", "large", "cat", "dog", "car", "truck"], sentences


@pytest.fixture(scope="module")
def vec_run(tmp_path_factory):
    """One ``rnnkit vectors train`` on a planted-synonym corpus, shared below."""
    from rnnkit.cli.main import main

    directory = tmp_path_factory.mktemp("vectors")
    _, sentences = _planted(800, seed=0)
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
    out = directory / "run"
    code = main(["vectors", "train", "--train", str(corpus), "--out", str(out),
                 "--embedding-size", "16", "--hidden-size", "32", "--max-epochs", "8",
                 "--lr", "1e-2", "--bptt", "20", "--batch-size", "8", "--min-freq", "1",
                 "--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"])
    assert code == 0
    return directory, corpus, out


def test_lm_vectors_put_planted_synonyms_nearest(vec_run, capsys):
    from rnnkit.cli.main import main

    _, _, out = vec_run
    vec = read_vectors(out / "vectors.txt")
    assert "<unk>" not in vec.index and "\n" not in vec.index
    assert main(["vectors", "neighbours", "--vectors", str(out / "vectors.txt"),
                 "big cat car", "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["large", "dog", "truck"], lines
    assert main(["vectors", "predict", "--checkpoint", str(out), "large,dog",
                 "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["big", "cat"], lines


def test_export_formats_and_layers(vec_run, tmp_path, capsys):
    from rnnkit.cli.main import main

    _, corpus, out = vec_run
    trained = read_vectors(out / "vectors.txt")
    for fmt in ("word2vec", "glove", "binary"):
        target = tmp_path / f"e.{fmt}"
        assert main(["vectors", "export", "--checkpoint", str(out), "--output", str(target),
                     "--format", fmt]) == 0
        back = read_vectors(target)
        assert back.words == trained.words
        np.testing.assert_allclose(back.matrix, trained.matrix, rtol=1e-5, atol=1e-6)
    target = tmp_path / "ctx.txt"
    assert main(["vectors", "export", "--checkpoint", str(out), "--output", str(target),
                 "--layer", "hidden-mean", "--data", str(corpus)]) == 0
    ctx = read_vectors(target)
    assert ctx.dim == 32 and set(ctx.words) == set(trained.words)
    assert main(["vectors", "eval", "--checkpoint", str(out), "--benchmarks",
                 str(_pairs_file(tmp_path)), "--json"]) == 0
    import json

    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert metrics["pairs"]["covered"] == 3 and metrics["pairs"]["pairs"] == 4


def _pairs_file(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("big\tlarge\t9\ncat\tdog\t8\nbig\tcat\t1\nbig\tnowhere\t3\n")
    return path


def test_evaluate_and_analogy_commands(vec_run, tmp_path, capsys):
    from rnnkit.cli.main import main

    _, _, out = vec_run
    vectors = str(out / "vectors.txt")
    assert main(["vectors", "evaluate", "--vectors", vectors, "--benchmarks",
                 str(_pairs_file(tmp_path)), "--json"]) == 0
    import json

    row = json.loads(capsys.readouterr().out)["pairs"]
    assert (row["covered"], row["pairs"]) == (3, 4) and row["oov_percent"] == 25.0
    assert row["spearman"] in (50.0, 100.0)  # big-cat the least similar; the other two either way
    assert main(["vectors", "analogy", "--vectors", vectors, "big large cat"]) == 0
    assert capsys.readouterr().out.startswith("big - large + cat: ")


# ---------------------------------------------------------------------- bad input (CLI)


def _cli_error(capsys, argv) -> str:
    from rnnkit.cli.main import main

    capsys.readouterr()  # what came before
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip()


def test_bad_vectors_files_from_the_command_line(tmp_path, capsys):
    dims = tmp_path / "dims.txt"
    dims.write_text("2 3\na 1 2 3\nb 1 2\n")
    err = _cli_error(capsys, ["vectors", "neighbours", "--vectors", str(dims), "a"])
    assert err == f"rnnkit: error: {dims}:3: 2 values for 'b', expected 3 (as the header)"
    lies = tmp_path / "lies.txt"
    lies.write_text("3 2\na 1 2\nb 1 2\n")
    err = _cli_error(capsys, ["vectors", "evaluate", "--vectors", str(lies), "--benchmarks",
                              str(_pairs_file(tmp_path))])
    assert err == f"rnnkit: error: {lies}:1: header says 3 vectors, the file has 2"
    utf = tmp_path / "utf.txt"
    utf.write_bytes(b"a 1 2\n\xe9t\xe9 1 2\n")
    err = _cli_error(capsys, ["vectors", "analogy", "--vectors", str(utf), "a b c"])
    assert err.startswith(f"rnnkit: error: {utf}:2: word b'\\xe9t\\xe9' is not valid UTF-8")


def test_analogy_with_unknown_words_is_reported(tmp_path, capsys):
    path = tmp_path / "v.txt"
    write_vectors(path, _vectors())
    err = _cli_error(capsys, ["vectors", "analogy", "--vectors", str(path),
                              "king nobody queen"])
    assert err == (f"rnnkit: error: analogy king nobody queen: 'nobody' not in {path} (5 words);"
                   " no answer")
    err = _cli_error(capsys, ["vectors", "analogy", "--vectors", str(path), "king"])
    assert "expected three words" in err
    err = _cli_error(capsys, ["vectors", "neighbours", "--vectors", str(path),
                              "nobody"])
    assert "none of the words is in" in err


def test_bad_similarity_set(tmp_path, capsys):
    vec = tmp_path / "v.txt"
    write_vectors(vec, _vectors())
    pairs = tmp_path / "bad.txt"
    pairs.write_text("king\tqueen\t3\nking\tqueen\n")
    err = _cli_error(capsys, ["vectors", "evaluate", "--vectors", str(vec), "--benchmarks",
                              str(pairs)])
    assert err.startswith(f"rnnkit: error: {pairs}:2: expected 'WORD1 WORD2 SCORE'")


def _fake_checkpoint(directory, task: str, files: dict, weights: dict | None):
    import json

    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"task": task, "model": {}}))
    for name, data in files.items():
        (directory / name).write_text(json.dumps(data))
    if weights is not None:
        save_file(weights, str(directory / "model.safetensors"))
    return directory


def test_export_from_classify_tag_translate_and_without_vocabulary(tmp_path, capsys):
    import torch

    from rnnkit.cli.main import main
    from rnnkit.data.tokenizers import WordTokenizer
    from rnnkit.data.vocab import Vocabulary

    vocab = Vocabulary(["good", "bad", "film"])  # <pad> <unk> <bos> <eos> good bad film
    emb = torch.arange(7 * 3, dtype=torch.float32).view(7, 3)
    cases = {"classify": ("vocab.json", vocab.to_json(), "embedding.weight"),
             "tag": ("words.json", vocab.to_json(), "embedding.weight"),
             "translate": ("src_tokenizer.json", WordTokenizer(vocab).to_json(),
                           "src_embedding.weight")}
    for task, (file, data, weight) in cases.items():
        ckpt = _fake_checkpoint(tmp_path / task, task, {file: data}, {weight: emb})
        out = tmp_path / f"{task}.txt"
        assert main(["vectors", "export", "--checkpoint", str(ckpt), "--output", str(out)]) == 0
        vec = read_vectors(out)
        assert vec.words == ["good", "bad", "film"], task
        np.testing.assert_array_equal(vec.matrix, emb[4:].numpy())
    none = _fake_checkpoint(tmp_path / "forecast", "forecast", {}, {"w": torch.zeros(2)})
    err = _cli_error(capsys, ["vectors", "export", "--checkpoint", str(none), "--output",
                              str(tmp_path / "x.txt")])
    assert err.startswith(f"rnnkit: error: --checkpoint {none}: checkpoint {none} (task "
                          "'forecast') has no vocabulary")
    assert not (tmp_path / "x.txt").exists()
    lm_like = _fake_checkpoint(tmp_path / "lm", "lm", {}, {"embedding.weight": emb})
    err = _cli_error(capsys, ["vectors", "export", "--checkpoint", str(lm_like), "--output",
                              str(tmp_path / "x.txt")])
    assert "tokenizer.json not there" in err
    err = _cli_error(capsys, ["vectors", "export", "--checkpoint", str(tmp_path / "classify"),
                              "--output", str(tmp_path / "x.txt"), "--layer", "hidden-mean"])
    assert "only for language-model checkpoints" in err


# ---------------------------------------------------------------------- word-LM options


def _fit(model, x, y, steps: int) -> None:
    """``steps`` Adam steps (lr 0.01) on the model's own mean loss of one batch."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        total, _ = model(x, targets=y)
        optimizer.zero_grad()
        (total / y.numel()).backward()
        optimizer.step()


def test_adaptive_softmax_scores_are_log_probabilities_and_train():
    import torch

    from rnnkit.models.lm import LanguageModel, LMConfig
    from rnnkit.tasks.lm import stream_loss

    torch.manual_seed(0)
    cfg = LMConfig(300, embedding_size=16, hidden_size=24, num_layers=1, softmax="adaptive",
                   dropout=0.0)
    assert cfg.cutoffs == (150,)
    model = LanguageModel(cfg)
    x, y = torch.randint(0, 300, (6, 4)), torch.randint(0, 300, (6, 4))
    scores, _ = model(x)
    assert torch.allclose(scores.logsumexp(-1), torch.zeros(6, 4), atol=1e-5)
    total, _ = model(x, targets=y)
    manual = -scores.gather(-1, y.unsqueeze(-1)).sum()
    assert torch.allclose(total, manual, rtol=1e-5)
    # it learns: the loss of a batch it is trained on falls far below uniform (ln 300 = 5.7)
    def batch_loss() -> float:
        with torch.no_grad():
            return model(x, targets=y)[0].item() / y.numel()

    first = batch_loss()
    _fit(model, x, y, 60)
    assert batch_loss() < 0.3 * first
    tokens = np.tile(np.arange(0, 300, 7), 5)
    model.eval()
    with torch.no_grad():
        expected = -model(torch.from_numpy(tokens[:-1]).view(-1, 1))[0][:, 0].gather(
            -1, torch.from_numpy(tokens[1:]).view(-1, 1)).mean().item()
        assert stream_loss(model, tokens, 1, len(tokens)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="--tie-weights"):
        LMConfig(300, softmax="adaptive", tie_weights=True)
    with pytest.raises(ValueError, match="--cutoffs"):
        LMConfig(300, softmax="adaptive", cutoffs=(200, 100))
    with pytest.raises(ValueError, match="--softmax-samples: only with --softmax sampled"):
        LMConfig(300, softmax="adaptive", softmax_samples=64)  # would be ignored silently


@pytest.mark.parametrize("tie", [False, True])
def test_sampled_softmax_over_every_word_is_the_full_softmax(tie):
    """With every word drawn once and no correction, the sampled loss (and its gradient) is the
    full softmax's: the scoring, the masking of the target among the drawn and the bridge of a
    tied model are checked exactly; eval mode always gives the full loss."""
    import torch

    from rnnkit.models.lm import LanguageModel, LMConfig

    torch.manual_seed(0)
    vocab = 40
    cfg = LMConfig(vocab, embedding_size=8, hidden_size=12, num_layers=1, dropout=0.0,
                   softmax="sampled", softmax_samples=vocab - 1, tie_weights=tie)
    model = LanguageModel(cfg).double()
    x, y = torch.randint(0, vocab, (5, 3)), torch.randint(0, vocab, (5, 3))
    model._draw = lambda device: torch.arange(vocab, device=device)
    model._log_expected = lambda ids: torch.zeros(ids.shape, dtype=torch.float64)
    sampled, _ = model(x, targets=y)
    grads = torch.autograd.grad(sampled, list(model.parameters()))
    logits, _ = model(x)
    full = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    assert sampled.item() == pytest.approx(full.item(), rel=1e-12)
    for got, want in zip(grads, torch.autograd.grad(full, list(model.parameters()))):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    model.eval()  # the full softmax (its loss is summed in float32)
    assert model(x, targets=y)[0].item() == pytest.approx(full.item(), rel=1e-6)


def test_sampled_softmax_draws_log_uniform_and_learns():
    import torch

    from rnnkit.models.lm import LanguageModel, LMConfig

    torch.manual_seed(0)
    vocab, count = 300, 50
    model = LanguageModel(LMConfig(vocab, embedding_size=16, hidden_size=24, num_layers=1,
                                   dropout=0.0, softmax="sampled", softmax_samples=count))
    ids = torch.arange(vocab)
    q = model._log_expected(ids).exp() / count  # the distribution _draw should follow
    assert q.sum().item() == pytest.approx(1.0, rel=1e-5)
    assert bool((q[1:] < q[:-1]).all())  # frequent (low) ids more often
    draws = torch.cat([model._draw(torch.device("cpu")) for _ in range(4000)])  # 200,000
    seen = torch.bincount(draws, minlength=vocab).double() / len(draws)
    for block in (slice(0, 1), slice(1, 2), slice(2, 10), slice(10, 100), slice(100, vocab)):
        want = q[block].sum().item()
        sigma = (want * (1 - want) / len(draws)) ** 0.5
        assert abs(seen[block].sum().item() - want) < 5 * sigma + 1e-9, block
    # it learns: the full-softmax loss of a batch it trains on falls far below uniform
    x, y = torch.randint(0, vocab, (6, 4)), torch.randint(0, vocab, (6, 4))

    def full_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = model(x, targets=y)[0].item() / y.numel()
        model.train()
        return loss

    first = full_loss()
    _fit(model, x, y, 200)  # on the sampled loss
    assert full_loss() < 0.3 * first
    with pytest.raises(ValueError, match="--softmax-samples: expected 1 to 299"):
        LMConfig(vocab, softmax="sampled", softmax_samples=300)
    with pytest.raises(ValueError, match="--cutoffs"):
        LMConfig(vocab, softmax="sampled", cutoffs=(100,))


def _word_lm(tmp_path, name: str, seed: int, *flags: str) -> tuple:
    """A tiny word LM trained by ``rnnkit lm train`` with ``flags`` on planted sentences:
    (corpus file, run directory, its saved model options)."""
    import json

    from rnnkit.cli.main import main

    _, sentences = _planted(300, seed=seed)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
    out = tmp_path / name
    assert main(["lm", "train", "--train", str(corpus), "--out", str(out), "--tokenizer",
                 "word", *flags, "--embedding-size", "8", "--hidden-size", "16",
                 "--num-layers", "1", "--bptt", "10", "--batch-size", "4", "--no-progress",
                 "--no-tensorboard", "--no-plot", "--threads", "1"]) == 0
    return corpus, out, json.loads((out / "best" / "config.json").read_text())["model"]


def _perplexity(capsys, run, corpus) -> float:
    import json

    from rnnkit.cli.main import main

    capsys.readouterr()
    assert main(["lm", "eval", "--checkpoint", str(run), "--data", str(corpus), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["perplexity"]


def test_lm_cli_sampled_tied(tmp_path, capsys):
    from rnnkit.cli.main import main

    corpus, out, saved = _word_lm(tmp_path, "sampled", 3, "--softmax", "sampled",
                                  "--softmax-samples", "8", "--tie-weights", "--max-epochs", "3")
    assert saved["softmax"] == "sampled" and saved["softmax_samples"] == 8
    assert 1 < _perplexity(capsys, out, corpus) < 25  # 22 words + newline + <unk>: below uniform
    target = tmp_path / "tied.txt"
    assert main(["vectors", "export", "--checkpoint", str(out), "--output", str(target)]) == 0
    assert read_vectors(target).dim == 8
    err = _cli_error(capsys, ["lm", "train", "--train", str(corpus), "--out",
                              str(tmp_path / "x"), "--tokenizer", "word", "--softmax",
                              "sampled", "--softmax-samples", "0"])
    assert "--softmax-samples: expected 1 to" in err
    err = _cli_error(capsys, ["lm", "train", "--train", str(corpus), "--out",
                              str(tmp_path / "y"), "--tokenizer", "word", "--softmax-samples",
                              "64"])  # without --softmax sampled it would be ignored
    assert "--softmax-samples: only with --softmax sampled (got --softmax full)" in err
    assert not (tmp_path / "y").exists()


def test_lm_cli_adaptive_and_bidirectional(tmp_path, capsys):
    import torch

    from rnnkit.apps import registry, runner
    from rnnkit.cli.main import main

    corpus, out, saved = _word_lm(tmp_path, "bi", 2, "--softmax", "adaptive", "--cutoffs",
                                  "5,12", "--bidirectional", "--max-epochs", "1")
    assert saved["softmax"] == "adaptive" and saved["bidirectional"] and saved["cutoffs"] == [5, 12]
    assert 1 < _perplexity(capsys, out, corpus) < 25  # 22 words + newline + <unk>: below uniform
    assert main(["lm", "generate", "--checkpoint", str(out), "--prime", "the",
                 "--max-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip()
    app = registry.get("lm")
    model = app.load(runner.open_checkpoint(app, out, "cpu")).model
    layers = model.contextual(torch.zeros(7, 2, dtype=torch.long))
    assert [tuple(t.shape) for t in layers] == [(7, 2, 8), (7, 2, 32)]
    target = tmp_path / "ctx.txt"
    assert main(["vectors", "export", "--checkpoint", str(out), "--layer", "hidden-mean",
                 "--data", str(corpus), "--output", str(target)]) == 0
    assert read_vectors(target).dim == 32
    err = _cli_error(capsys, ["lm", "train", "--train", str(corpus), "--out",
                              str(tmp_path / "x"), "--tokenizer", "word", "--softmax",
                              "adaptive", "--tie-weights"])
    assert "--tie-weights: not with --softmax adaptive" in err
    err = _cli_error(capsys, ["export", "--checkpoint", str(out), "--format", "torchscript",
                              "--output", str(tmp_path / "m.pt")])
    assert "--softmax adaptive has no fixed-graph export" in err
