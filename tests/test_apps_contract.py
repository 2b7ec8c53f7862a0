"""The application contract: a toy application registered in one line gets every command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.apps import registry
from rnnkit.cli.main import main

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def echo_app():
    sys.path.insert(0, str(HERE))
    import toy_echo

    registry.register("echo")(toy_echo.Echo)  # the one registration line
    yield toy_echo
    registry._APPS.pop("echo", None)
    sys.path.remove(str(HERE))


def _write_data(directory: Path, count: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice("abcde") for _ in range(rng.randint(2, 4)))
             for _ in range(count)]
    path = directory / f"seqs{seed}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(echo_app, tmp_path_factory):
    """One training run of the toy, shared by the tests below."""
    directory = tmp_path_factory.mktemp("echo")
    train, valid = _write_data(directory, 400, 1), _write_data(directory, 64, 2)
    out = directory / "run"
    code = main(["echo", "train", "--train", str(train), "--valid", str(valid), "--out",
                 str(out), "--max-epochs", "8", "--eval-every", "0", "--lr", "1e-2",
                 "--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"])
    assert code == 0
    return directory, train, valid, out


def _records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_toy_trains_below_a_loss_threshold(trained):
    _, _, _, out = trained
    losses = [r["valid_loss"] for r in _records(out) if "valid_loss" in r]
    assert losses[0] > 0.5  # it starts out guessing
    assert losses[-1] < 0.15 * losses[0]
    saved = json.loads((out / "best" / "config.json").read_text())
    assert saved["task"] == "echo"
    assert saved["options"]["hidden_size"] == 32  # the nested model section, saved flat


def test_eval_prints_metrics_and_json(trained, capsys):
    _, _, _, out = trained
    assert main(["echo", "eval", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["sequences"] == 64
    assert metrics["sequence_accuracy"] > 0.8


def test_predict_writes_atomically(trained, tmp_path):
    _, _, _, out = trained
    source = tmp_path / "in.txt"
    source.write_text("a b c\nd e\n")
    target = tmp_path / "out.txt"
    assert main(["echo", "predict", "--checkpoint", str(out), "--input", str(source),
                 "--output", str(target)]) == 0
    assert target.read_text().splitlines() == ["a a b", "d d"]


def test_the_run_report_comes_for_free(trained, capsys):
    """An application without an inspect hook still gets the report of its run."""
    _, _, _, out = trained
    assert main(["inspect", "--checkpoint", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "rnnkit inspect — echo checkpoint best" in html
    assert "rnn.weight_hh_l0" in html and "Training curves" in html
    assert "Hidden units over the input" not in html


def test_resume_reuses_the_saved_options_and_flags_override(trained, capsys):
    _, _, _, out = trained
    steps = max(r["step"] for r in _records(out))
    # no --train given: the run's own options come back; --max-epochs raised by a flag
    assert main(["echo", "train", "--resume", str(out), "--max-epochs", "9",
                 "--no-progress", "--no-tensorboard", "--no-plot"]) == 0
    assert f"checkpoints in {out}" in capsys.readouterr().out
    assert max(r["step"] for r in _records(out)) > steps


def test_config_toml_and_deprecated_alias(echo_app, tmp_path, capsys):
    train, valid = _write_data(tmp_path, 40, 3), _write_data(tmp_path, 8, 4)
    toml = tmp_path / "run.toml"
    toml.write_text(f'train = "{train}"\n[model]\nhidden_size = 8\n[training]\nmax_steps = 2\n')
    out = tmp_path / "run"
    assert main(["echo", "train", "--config", str(toml), "--dev", str(valid), "--out",
                 str(out), "--no-progress", "--no-tensorboard", "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert err.count("--dev is deprecated; use --valid") == 1
    saved = json.loads((out / "last" / "config.json").read_text())
    assert saved["options"]["hidden_size"] == 8
    assert saved["options"]["valid"] == str(valid)
    assert saved["train"]["max_steps"] == 2


def test_bad_input_names_file_and_line(echo_app, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("a b\n\nc d\n")
    out = tmp_path / "run"
    assert main(["echo", "train", "--train", str(bad), "--out", str(out)]) == 2
    assert f"{bad}:2: empty line" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_toml_key_and_missing_checkpoint(echo_app, tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("hiden_size = 3\n")
    assert main(["echo", "train", "--config", str(toml)]) == 2
    assert "unknown option(s): hiden_size" in capsys.readouterr().err
    assert main(["echo", "eval"]) == 2
    assert "--checkpoint: required" in capsys.readouterr().err


def test_top_level_help_lists_the_application(echo_app, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "echo a token sequence one step late (a toy)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["echo", "train", "--help"])
    text = capsys.readouterr().out
    assert "--hidden-size" in text and "--max-steps" in text and "seqs.txt" in text


def test_toy_under_torchrun(echo_app, tmp_path):
    train = _write_data(tmp_path, 64, 5)
    script = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import toy_echo; "
              "from rnnkit.apps import registry; registry.register('echo')(toy_echo.Echo);"
              " from rnnkit.cli.main import main; sys.exit(main(sys.argv[1:]))")
    entry = tmp_path / "entry.py"
    entry.write_text(script)
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(entry),
         "echo", "train", "--train", str(train), "--out", str(out), "--max-steps", "3",
         "--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("stopped (") == 1  # only the first process reports
    assert (out / "last" / "model.safetensors").exists()


RETIRED = {"data", "dev", "word_dim", "embed_dim", "emb_dim", "embed_size", "hidden_dim",
           "hidden", "layers", "n_layers", "rnn_type", "rnn_cell", "valid_file", "train_file"}


def test_one_name_per_concept():
    """Every registered application names the shared concepts alike (docs/options.md)."""
    from rnnkit.train.config import leaf_fields

    for name in registry.names():
        app = registry.get(name)
        fields = {f.name for _, f in leaf_fields(app.Config)}
        assert not fields & RETIRED, (name, fields & RETIRED)
        assert "train" in fields and "batch_size" in fields, name
        assert app.summary and app.examples, name


def test_every_application_is_listed_with_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in registry.names():
        assert f"    {name} " in text or f"    {name}\n" in text, name


def test_every_command_has_working_help():
    """``--help`` of every command and sub-command formats (argparse %-formats help texts: a
    plain "5 %" in an option's help once made ``rnnkit speech train --help`` crash)."""
    import argparse

    from rnnkit.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: str):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")

    seen = 0
    for path, parser in walk(build_parser(), "rnnkit"):
        assert parser.format_help().strip(), path
        seen += 1
    assert seen > 3 * len(registry.names()), seen  # every application's train/eval/predict at least
