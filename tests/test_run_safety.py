"""A trained run is never lost: no training into another run without --resume or --overwrite,
one training at a time per directory, a torn metrics line or a killed checkpoint write does not
break resume, and the model's options cannot change on resume (issue 24, items 7-9)."""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from pathlib import Path

import pytest

from rnnkit.apps import registry
from rnnkit.cli.main import main
from rnnkit.train.logging import read_metrics

HERE = Path(__file__).parent
QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


@pytest.fixture(scope="module")
def echo():
    sys.path.insert(0, str(HERE))
    import toy_echo

    registry.register("echo")(toy_echo.Echo)
    yield
    registry._APPS.pop("echo", None)
    sys.path.remove(str(HERE))


@pytest.fixture
def data(tmp_path) -> Path:
    rng = random.Random(0)
    path = tmp_path / "seqs.txt"
    path.write_text("".join(" ".join(rng.choice("abc") for _ in range(3)) + "\n"
                            for _ in range(40)))
    return path


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["echo", "train", "--train", str(data), "--out", str(out), "--max-steps", "2",
                 "--eval-every", "1", "--hidden-size", "8", *QUIET, *extra])


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(echo, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out) == 0
    before = (out / "last" / "model.safetensors").read_bytes()
    assert _train(data, out) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: already holds a run (best, last, metrics.jsonl)" in err
    assert (out / "last" / "model.safetensors").read_bytes() == before
    assert _train(data, out, "--seed", "7", "--overwrite") == 0
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == sorted(steps) and max(steps) == 2  # the old log did not grow


def test_a_second_training_into_the_same_directory_is_refused(echo, data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # alive: this process
    assert _train(data, out) == 2
    assert "another training is running there" in capsys.readouterr().err
    (out / ".lock").write_text(f"{socket.gethostname()} 999999999\n")  # gone: a stale lock
    assert _train(data, out) == 0
    assert not (out / ".lock").exists()


def test_torn_metrics_line_and_checkpoint_litter_do_not_break_resume(echo, data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out) == 0
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 3, "loss": 0.')  # a write cut by a crash or a full disk
    (out / ".best.tmp-123").mkdir()
    (out / ".last.old-456").mkdir()
    assert main(["echo", "train", "--resume", str(out), "--max-steps", "4", *QUIET]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] <= 4 for line in lines)  # every line whole again
    assert not list(out.glob(".best.tmp-*")) and not list(out.glob(".last.old-*"))
    assert main(["inspect", "--checkpoint", str(out)]) == 0


def test_model_options_cannot_change_on_resume(echo, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out) == 0
    assert main(["echo", "train", "--resume", str(out), "--hidden-size", "16", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "--hidden-size: cannot change when resuming (the run has 8, got 16)" in err
    assert main(["echo", "train", "--resume", str(out), "--hidden-size", "8", "--max-steps",
                 "3", *QUIET]) == 0  # the same value is fine


def test_read_metrics_skips_bad_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n[1, 2]\n{"step": 2}\n{"st')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


@pytest.mark.parametrize("argv, message", [
    (["lm", "generate", "--temperature", "nan"], "--temperature: expected a finite number"),
    (["lm", "generate", "--temperature", "inf"], "--temperature: expected a finite number"),
    (["lm", "train", "--weight-decay", "nan"], "--weight-decay: expected a finite number"),
    (["lm", "train", "--beta2", "1"], "--beta2: expected a value in [0, 1), got 1.0"),
    (["lm", "train", "--beta2", "nan"], "--beta2: expected a finite number"),
    (["lm", "train", "--clip-norm", "nan"], "--clip-norm: expected a finite number"),
    (["lm", "train", "--min-lr-ratio", "2"], "--min-lr-ratio: expected a value in [0, 1]"),
    (["translate", "predict", "--alpha", "nan"], "--alpha: expected a finite number"),
    (["demo", "--threads", "-1"], "--threads: expected a value in [0, inf), got -1"),
])
def test_numeric_options_are_checked_in_one_place(tmp_path, capsys, argv, message):
    if argv[0] != "demo" and argv[1] in ("generate", "predict"):
        argv = [*argv, "--checkpoint", str(tmp_path / "none")]
    if argv[1] == "train":
        argv = [*argv, "--train", str(tmp_path / "none.txt"), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_huge_seed_from_toml_is_refused(tmp_path, capsys):
    (tmp_path / "a.toml").write_text("seed = 100000000000000000000000\n")
    assert main(["lm", "train", "--config", str(tmp_path / "a.toml"), "--train", "x.txt"]) == 2
    assert "--seed: expected a value in [0, 18446744073709551615]" in capsys.readouterr().err


def test_disk_full_and_out_of_memory_end_in_one_clear_line(echo, data, tmp_path, capsys,
                                                           monkeypatch):
    import errno

    from rnnkit.train import trainer

    out = tmp_path / "run"
    assert _train(data, out) == 0
    before = (out / "last" / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / ".last.tmp-1"))

    monkeypatch.setattr(trainer.ckpt, "save_checkpoint", full)
    assert main(["echo", "train", "--resume", str(out), "--max-steps", "4", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "rnnkit: error: the disk is full while writing" in err and "Traceback" not in err
    assert (out / "last" / "model.safetensors").read_bytes() == before
    monkeypatch.undo()

    def no_memory(self, *args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "1099511627776 bytes.")

    monkeypatch.setattr(trainer.Trainer, "_train_step", no_memory)
    assert main(["echo", "train", "--resume", str(out), "--max-steps", "4", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "rnnkit: error: out of memory (DefaultCPUAllocator: can't allocate memory" in err
    assert (out / "last" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("app", ["lm", "tag", "classify", "translate"])
def test_a_device_or_fifo_as_data_is_not_a_regular_file(app, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for source in ("/dev/zero", str(fifo)):
        assert main([app, "train", "--train", source, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert f"{source}: not a regular file" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``rnnkit … | head``: the reader leaves early; no traceback, exit 141 (as on SIGPIPE)."""
    import subprocess

    words = [f"w{i}" for i in range(3000)]
    rows = "".join(f"{w} {i % 7} {i % 5 + 1} {i % 3}\n" for i, w in enumerate(words))
    (tmp_path / "v.txt").write_text(f"{len(words)} 3\n{rows}")
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "vectors", "neighbours", "--vectors",
         str(tmp_path / "v.txt"), "--top-k", "2999", "w1", "w2", "w3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline()  # one line, then the reader goes away
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"Error" not in err, err.decode()
