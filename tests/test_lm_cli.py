"""``rnnkit lm`` and ``rnnkit demo`` from the command line: runs, TOML, resume, torchrun, and
one clear message (exit 2, no traceback) for each bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rnnkit.cli.main import main

PATTERN = "abcdefgh\n" * 300
TINY = ["--bptt", "16", "--batch-size", "4", "--embedding-size", "8", "--hidden-size", "16",
        "--num-layers", "1", "--no-progress", "--no-plot", "--threads", "1", "--max-epochs",
        "none"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained run directory, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("lm")
    (root / "p.txt").write_text(PATTERN)
    code = main(["lm", "train", "--train", str(root / "p.txt"), "--out", str(root / "run"),
                 "--max-steps", "20", "--eval-every", "10", *TINY])
    assert code == 0
    return root


def test_train_eval_generate(trained, capsys):
    assert main(["lm", "eval", "--checkpoint", str(trained / "run"), "--data",
                 str(trained / "p.txt"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"loss", "perplexity", "bpc", "tokens", "chars"} <= set(metrics)
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / 0.6931471805599453)
    args = ["lm", "generate", "--checkpoint", str(trained / "run"), "--prime", "abc",
            "--max-tokens", "20", "--seed", "3", "--num-samples", "2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.count("--- sample") == 2


def test_toml_config_and_flag_override(tmp_path):
    (tmp_path / "p.txt").write_text(PATTERN)
    (tmp_path / "run.toml").write_text(
        f'train = "{tmp_path / "p.txt"}"\nout = "{tmp_path / "run"}"\ncell = "gru"\n'
        "[training]\nmax_steps = 4\neval_every = 4\nlr = 0.5\n")
    assert main(["lm", "train", "--config", str(tmp_path / "run.toml"), "--lr", "0.01",
                 *TINY]) == 0
    saved = json.loads((tmp_path / "run/best/config.json").read_text())
    assert saved["model"]["cell"] == "gru" and saved["train"]["lr"] == 0.01
    assert saved["train"]["max_steps"] == 4


def test_resume_from_cli_continues(trained, tmp_path):
    out = tmp_path / "copy"
    args = ["lm", "train", "--train", str(trained / "p.txt"), "--out", str(out),
            "--eval-every", "10", *TINY]
    assert main([*args, "--max-steps", "10"]) == 0
    assert main([*args, "--max-steps", "20", "--resume", str(out)]) == 0
    assert json.loads((out / "last/config.json").read_text())["step"] == 20
    # without --data / --out / model flags: the run's own options and directory
    assert main(["lm", "train", "--resume", str(out / "last"), "--max-steps", "30"]) == 0
    saved = json.loads((out / "last/config.json").read_text())
    assert saved["step"] == 30 and saved["train"]["threads"] == 1
    assert saved["options"]["bptt"] == 16 and saved["train"]["eval_every"] == 10


def _expect_error(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rnnkit: error: ") and message in err, err
    assert "Traceback" not in err


def test_bad_corpora(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad.txt").write_bytes(b"abc\n\xc3\x28 broken\n")
    out = ["--out", str(tmp_path / "run"), *TINY]
    _expect_error(capsys, ["lm", "train", "--train", str(tmp_path / "empty.txt"), *out], "empty")
    _expect_error(capsys, ["lm", "train", "--train", str(tmp_path / "dir"), *out],
                  "no files matching '*.txt'")
    _expect_error(capsys, ["lm", "train", "--train", str(tmp_path / "bad.txt"), *out],
                  "bad.txt: invalid UTF-8 at byte 4 (line 2)")
    _expect_error(capsys, ["lm", "train", "--train", str(tmp_path / "nope.txt"), *out],
                  "no such file")
    assert not (tmp_path / "run").exists()  # nothing left behind
    (tmp_path / "file").write_text("x")
    _expect_error(capsys, ["lm", "train", "--train", str(tmp_path / "bad.txt"), *TINY, "--out",
                           str(tmp_path / "file")], "is not a directory")


@pytest.mark.parametrize("flag, value", [("--bptt", "0"), ("--batch-size", "-1"),
                                         ("--lr", "0"), ("--dropout", "1.5")])
def test_bad_options(trained, capsys, flag, value):
    _expect_error(capsys, ["lm", "train", "--train", str(trained / "p.txt"), "--out",
                           str(trained / "x"), *TINY, flag, value], flag)


def test_bad_toml(tmp_path, capsys):
    (tmp_path / "a.toml").write_text("hidden_sise = 3\n")
    _expect_error(capsys, ["lm", "train", "--config", str(tmp_path / "a.toml")],
                  "unknown option(s): hidden_sise")
    (tmp_path / "b.toml").write_text("lr = 'fast'\n")
    _expect_error(capsys, ["lm", "train", "--config", str(tmp_path / "b.toml")],
                  "lr: expected float")


def test_bad_checkpoints(trained, tmp_path, capsys):
    data = ["--data", str(trained / "p.txt")]
    _expect_error(capsys, ["lm", "eval", "--checkpoint", str(tmp_path / "none"), *data],
                  "directory not found")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (broken / name).write_bytes((trained / "run/best" / name).read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _expect_error(capsys, ["lm", "eval", "--checkpoint", str(broken), *data], "truncated")
    config = json.loads((broken / "config.json").read_text())
    config["model"]["hidden_size"] = 40
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes(
        (trained / "run/best/model.safetensors").read_bytes())
    _expect_error(capsys, ["lm", "generate", "--checkpoint", str(broken)], "do not fit")
    config["task"] = "tag"
    (broken / "config.json").write_text(json.dumps(config))
    _expect_error(capsys, ["lm", "generate", "--checkpoint", str(broken)],
                  "made by task 'tag', expected a 'lm' checkpoint")
    _expect_error(capsys, ["lm", "train", "--train", data[1], "--out", str(tmp_path / "r"), *TINY,
                           "--resume", str(trained / "run/best")], "trainer_state.pt")


def test_help_has_examples(capsys):
    for argv in (["lm", "train", "--help"], ["lm", "generate", "--help"], ["demo", "--help"],
                 ["lm", "eval", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "examples:" in capsys.readouterr().out


def test_torchrun_two_processes_on_cpu(tmp_path):
    (tmp_path / "p.txt").write_text(PATTERN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "rnnkit", "lm", "train", "--train",
               str(tmp_path / "p.txt"), "--out", str(tmp_path / "run"), "--max-steps", "6",
               "--eval-every", "3", *TINY]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "run/last/config.json").read_text())
    assert saved["step"] == 6 and saved["metrics"]["valid_loss"] > 0


def test_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--minutes", "0.1", "--out", str(tmp_path / "demo"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "--- sample at step" in out and "checkpoint:" in out
    assert (tmp_path / "demo/best/model.safetensors").exists()
    assert (tmp_path / "demo/loss.png").exists()
    # a second demo replaces the first; a demo never replaces another run
    assert main(["demo", "--minutes", "0.02", "--out", str(tmp_path / "demo"),
                 "--no-progress"]) == 0
    assert main(["demo", "--minutes", "0.02", "--out", str(tmp_path / "demo2"),
                 "--no-progress"]) == 0
    (tmp_path / "demo2" / "DEMO").unlink()  # now an ordinary run
    assert main(["demo", "--minutes", "0.1", "--out", str(tmp_path / "demo2"),
                 "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_word_and_bpe_tokenizers_end_to_end(tmp_path, capsys, tokenizer):
    text = "the cat sat on the mat.\nthe dog sat on the log.\n" * 40
    (tmp_path / "t.txt").write_text(text)
    assert main(["lm", "train", "--train", str(tmp_path / "t.txt"), "--out", str(tmp_path / "r"),
                 "--tokenizer", tokenizer, "--vocab-size", "300", "--max-steps", "4",
                 "--eval-every", "4", *TINY]) == 0
    capsys.readouterr()
    assert main(["lm", "generate", "--checkpoint", str(tmp_path / "r"), "--prime", "the",
                 "--max-tokens", "8", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("the")
    saved = json.loads((tmp_path / "r/best/tokenizer.json").read_text())
    assert saved["kind"] == tokenizer


def test_old_data_flag_still_trains_with_one_warning(tmp_path, capsys):
    (tmp_path / "p.txt").write_text(PATTERN)
    assert main(["lm", "train", "--data", str(tmp_path / "p.txt"), "--out", str(tmp_path / "r"),
                 "--max-steps", "2", "--eval-every", "2", *TINY]) == 0
    assert capsys.readouterr().err.count("--data is deprecated; use --train") == 1
    saved = json.loads((tmp_path / "r/last/config.json").read_text())
    assert saved["options"]["train"] == str(tmp_path / "p.txt")


def test_resume_of_a_run_saved_before_the_application_contract(trained, tmp_path):
    """Runs from before stored their options under "lm" with "data": resume still reads them."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(trained / "run", out)
    for name in ("last", "best"):
        path = out / name / "config.json"
        saved = json.loads(path.read_text())
        saved["lm"] = {**saved.pop("options"), "data": str(trained / "p.txt")}
        del saved["lm"]["train"]
        path.write_text(json.dumps(saved))
    assert main(["lm", "train", "--resume", str(out), "--max-steps", "22"]) == 0
    saved = json.loads((out / "last/config.json").read_text())
    assert saved["step"] == 22 and saved["options"]["train"] == str(trained / "p.txt")


def test_prime_with_unknown_characters_is_echoed_as_typed(trained, capsys):
    assert main(["lm", "generate", "--checkpoint", str(trained / "run"), "--prime", "abXYa",
                 "--max-tokens", "5", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("abXYa") and "<unk>" not in captured.out
    assert captured.err.count("--prime: 'X', 'Y' never seen in training, read as <unk>") == 1


def test_checkpoint_values_of_the_wrong_type_or_size_name_the_file(trained, tmp_path, capsys):
    """Issue 24, item 12: config values of the wrong type, or a tokenizer whose size does not
    match the model, are named at load time."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained / "run/best", broken)
    config = json.loads((broken / "config.json").read_text())
    for value, message in ((32.0, "model.hidden_size: expected <class 'int'>, got 32.0"),
                           (True, "model.hidden_size: expected <class 'int'>, got True")):
        (broken / "config.json").write_text(json.dumps(
            {**config, "model": {**config["model"], "hidden_size": value}}))
        _expect_error(capsys, ["lm", "generate", "--checkpoint", str(broken)], message)
    (broken / "config.json").write_text(json.dumps(
        {**config, "model": {**config["model"], "vocab_size": 3}}))
    _expect_error(capsys, ["lm", "generate", "--checkpoint", str(broken)],
                  "tokenizer.json holds 10 entries, but the model was built for 3 (vocab_size)")
