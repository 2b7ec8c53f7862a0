"""``rnnkit inspect`` on language-model, tagger and classifier checkpoints, and one clear
message (exit 2, no traceback) for each bad input."""

from __future__ import annotations

import re

import pytest
import torch

from rnnkit.cli.main import main

LM = ["--bptt", "16", "--batch-size", "4", "--embedding-size", "8", "--hidden-size", "16",
      "--num-layers", "2", "--cell", "gru", "--no-progress", "--no-plot", "--threads", "1",
      "--max-epochs", "none", "--no-tensorboard"]
SMALL = ["--hidden-size", "12", "--num-layers", "1", "--dropout", "0", "--word-dropout", "0",
         "--min-freq", "1", "--batch-size", "8", "--max-steps", "4", "--eval-every", "2",
         "--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect-lm")
    (root / "p.txt").write_text("abcdefgh\n" * 200)
    assert main(["lm", "train", "--data", str(root / "p.txt"), "--out", str(root / "run"),
                 "--max-steps", "8", "--eval-every", "4", "--diagnostics-every", "2",
                 "--log-every", "2", *LM]) == 0
    return root / "run"


def _spans(html: str) -> dict[str, int]:
    blocks = re.findall(r'data-unit="(\d+)">(.*?)</div>', html, flags=re.S)
    return {unit: body.count('<span class="sym"') for unit, body in blocks}


def test_lm_report(lm_run, capsys):
    text = "abcdefgh\nabc"
    assert main(["inspect", "--checkpoint", str(lm_run), "--text", text, "--num-units", "3",
                 "--top-k", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {lm_run / 'report.html'}"
    html = (lm_run / "report.html").read_text(encoding="utf-8")
    spans = _spans(html)
    assert len(spans) == 3 and set(spans.values()) == {len(text)}
    assert html.count("data:image/png;base64,") == 3  # flow, heatmap, training curves
    assert "Top-2 next-token predictions" in html and "next: " in html


def test_chosen_units_from_a_file(lm_run, tmp_path):
    (tmp_path / "in.txt").write_text("hgfedcba")
    out = tmp_path / "r.html"
    assert main(["inspect", "--checkpoint", str(lm_run / "best"), "--file",
                 str(tmp_path / "in.txt"), "--units", "0,15", "--out", str(out)]) == 0
    assert _spans(out.read_text(encoding="utf-8")) == {"0": 8, "15": 8}


def _expect_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and message in err and "Traceback" not in err


def test_bad_input(lm_run, tmp_path, capsys):
    run = str(lm_run)
    _expect_error(capsys, ["inspect", "--checkpoint", str(tmp_path / "nope"), "--text", "a"],
                  "directory not found")
    _expect_error(capsys, ["inspect", "--checkpoint", run, "--text", "abc", "--units", "16"],
                  "--units: unit 16 does not exist; the top layer has 16 units (0–15)")
    _expect_error(capsys, ["inspect", "--checkpoint", run, "--file", str(tmp_path / "x")],
                  "file not found")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00abc")
    _expect_error(capsys, ["inspect", "--checkpoint", run, "--file", str(tmp_path / "bin")],
                  "not UTF-8 text")
    _expect_error(capsys, ["inspect", "--checkpoint", run, "--text", "  "], "text is empty")
    _expect_error(capsys, ["inspect", "--checkpoint", run, "--text", "a", "--top-k", "0"],
                  "--top-k: must be >= 1")
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird/config.json").write_text('{"task": "nosuchapp"}')
    _expect_error(capsys, ["inspect", "--checkpoint", str(tmp_path / "weird"), "--text", "a"],
                  "made by task 'nosuchapp', which is not an installed application")
    (tmp_path / "weird/config.json").write_text('{"task": "translate"}')
    _expect_error(capsys, ["inspect", "--checkpoint", str(tmp_path / "weird")],
                  "src_tokenizer.json is missing")
    assert not (tmp_path / "weird/report.html").exists()
    _expect_error(capsys, ["inspect", "--checkpoint", run],  # neither --text nor --file
                  "--text or --file: required")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "rnnkit inspect --checkpoint" in out


def test_tagger_report(tmp_path, capsys):
    lines = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"] * 6
    tags = {"the": "D", "a": "D", "cat": "N", "dog": "N", "sat": "V", "ran": "V"}
    conll = "\n".join("".join(f"{w} _ {tags[w]}\n" for w in s.split()) for s in lines)
    (tmp_path / "train.txt").write_text(conll)
    assert main(["tag", "train", "--train", str(tmp_path / "train.txt"), "--dev",
                 str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--word-dim", "8",
                 "--char-dim", "4", "--char-hidden", "4", *SMALL]) == 0
    out = tmp_path / "tag.html"
    assert main(["inspect", "--checkpoint", str(tmp_path / "run"), "--text",
                 "the dog ran", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert set(_spans(html).values()) == {3}
    assert "Per-word labels" in html and '<span class="label">' in html


def test_classifier_report(tmp_path, capsys):
    lines = ["pos good fine film", "neg bad dull film", "pos fine good", "neg dull bad"] * 6
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    assert main(["classify", "train", "--train", str(tmp_path / "train.txt"), "--dev",
                 str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--embed-dim",
                 "8", *SMALL]) == 0
    out = tmp_path / "cls.html"
    assert main(["inspect", "--checkpoint", str(tmp_path / "run"), "--text",
                 "a good film", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert set(_spans(html).values()) == {3}
    assert "Class probabilities" in html and "pos" in html and "neg" in html


def test_classifier_with_chars_report(tmp_path):
    lines = ["pos good fine film", "neg bad dull film", "pos fine good", "neg dull bad"] * 6
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    assert main(["classify", "train", "--train", str(tmp_path / "train.txt"), "--dev",
                 str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--embed-dim",
                 "8", "--chars", "--char-dim", "4", "--char-hidden", "4", *SMALL]) == 0
    out = tmp_path / "cls.html"
    assert main(["inspect", "--checkpoint", str(tmp_path / "run"), "--text",
                 "a goodish film", "--out", str(out)]) == 0  # "goodish": unseen, read by spelling
    html = out.read_text(encoding="utf-8")
    assert set(_spans(html).values()) == {3}
    assert "Class probabilities" in html


def test_classifier_with_cell_options_report(tmp_path):
    """--zoneout/--layer-norm build rnnkit.nn.regularised layers: the report shows the word
    RNN's units (2 × 12 here, not the character RNN's 2 × 4), its W_hh and its steps' gradient
    flow."""
    lines = ["pos good fine film", "neg bad dull film", "pos fine good", "neg dull bad"] * 6
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    assert main(["classify", "train", "--train", str(tmp_path / "train.txt"), "--valid",
                 str(tmp_path / "train.txt"), "--out", str(tmp_path / "run"), "--embedding-size",
                 "8", "--chars", "--char-dim", "4", "--char-hidden", "4", "--zoneout", "0.1",
                 "--layer-norm", *SMALL]) == 0
    out = tmp_path / "cls.html"
    assert main(["inspect", "--checkpoint", str(tmp_path / "run"), "--text", "a good film",
                 "--units", "0,23", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert _spans(html) == {"0": 3, "23": 3}
    assert "rnn.weight_hh_l0_reverse: sigma_max" in html
    assert re.search(r"per layer \([^)]*\brnn\.l0, rnn\.l0_reverse\b", html)
    assert "not recorded" not in html
