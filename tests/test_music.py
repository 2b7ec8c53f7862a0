"""rnnkit music: learning a chord progression, the NLL by hand, MIDI and ABC round trips,
reproducible generation, and every bad input named (exit 2, nothing written)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import rnnkit.apps.music  # noqa: F401  (registers the application)
from rnnkit.cli.main import main
from rnnkit.data.music import midi_bytes, read_midi
from rnnkit.data.music_abc import read_abc, tune_text
from rnnkit.models.music import PianoRollConfig, PianoRollRNN

C_MAJOR, G_MAJOR = (48, 60, 64, 67), (43, 59, 62, 67)
QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


def _progression(length: int) -> list[list[int]]:
    """Two chords, each held two steps: C C G G C C …"""
    chords = [C_MAJOR, C_MAJOR, G_MAJOR, G_MAJOR]
    return [list(chords[i % 4]) for i in range(length)]


def _jsb_file(directory: Path) -> Path:
    train = [_progression(length) for length in range(12, 20)] * 3
    valid = [_progression(16)] * 4
    path = directory / "chords.json"
    path.write_text(json.dumps({"train": train, "valid": valid, "test": valid}))
    return path


def _train(args: list[str]) -> None:
    assert main(["music", "train", *args, "--eval-every", "0", *QUIET]) == 0


@pytest.fixture(scope="module")
def chords(tmp_path_factory):
    """The chord corpus and a Bernoulli and an RNN-NADE model trained on it."""
    directory = tmp_path_factory.mktemp("music")
    data = _jsb_file(directory)
    runs = {}
    for output in ("bernoulli", "nade"):
        runs[output] = directory / output
        _train(["--train", str(data), "--out", str(runs[output]), "--distribution", output,
                "--cell", "gru", "--hidden-size", "24", "--nade-hidden", "8", "--batch-size", "4",
                "--max-epochs", "16", "--lr", "3e-2", "--schedule", "constant",
                "--weight-decay", "0", "--seed", "3"])
    return directory, data, runs


def _metrics(capsys, *args: str) -> dict:
    assert main(["music", "eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("output", ["bernoulli", "nade"])
def test_learns_a_two_chord_progression(chords, capsys, output):
    _, data, runs = chords
    records = [json.loads(line) for line in (runs[output] / "metrics.jsonl").read_text()
               .splitlines()]
    first = next(r["valid_nll"] for r in records if "valid_nll" in r)
    metrics = _metrics(capsys, "--checkpoint", str(runs[output]), "--data", str(data))
    assert first > 3.0  # it starts out guessing
    assert metrics["nll_per_step"] < 1.0
    assert metrics["steps"] == 64 and metrics["pieces"] == 4
    assert metrics["bits_per_step"] == pytest.approx(metrics["nll_per_step"] / math.log(2))


def test_bernoulli_nll_by_hand():
    model = PianoRollRNN(PianoRollConfig(pitches=2, hidden_size=3, distribution="bernoulli"))
    with torch.no_grad():
        model.head.linear.weight.zero_()
        model.head.linear.bias.copy_(torch.tensor([math.log(4.0), math.log(3 / 7)]))  # p .8 .3
    roll = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])  # (B=1, T=3, P=2)
    nll = model(roll, torch.tensor([3]))[0]
    expected = [-math.log(0.8) - math.log(0.7), -math.log(0.8) - math.log(0.3),
                -math.log(0.2) - math.log(0.7)]
    assert nll.tolist() == pytest.approx(expected, abs=1e-5)
    assert model(roll, torch.tensor([2]))[0, 2] == 0  # past the length: no loss


def test_nade_nll_by_hand():
    model = PianoRollRNN(PianoRollConfig(pitches=2, hidden_size=3, distribution="nade",
                                         nade_hidden=1))
    head = model.head
    with torch.no_grad():
        for layer in (head.to_visible, head.to_hidden):
            layer.weight.zero_()
        head.to_visible.bias.copy_(torch.tensor([0.5, -1.0]))  # b
        head.to_hidden.bias.fill_(0.2)  # c
        head.weight_in.copy_(torch.tensor([[2.0], [0.0]]))  # W
        head.weight_out.copy_(torch.tensor([[1.5], [-3.0]]))  # V
    roll = torch.tensor([[[1.0, 1.0]]])
    def sigmoid(value: float) -> float:
        return 1 / (1 + math.exp(-value))

    p1 = sigmoid(0.5 + 1.5 * sigmoid(0.2))  # p(x_1 = 1)
    p2 = sigmoid(-1.0 - 3.0 * sigmoid(0.2 + 2.0))  # p(x_2 = 1 | x_1 = 1)
    expected = -math.log(p1) - math.log(p2)
    with torch.no_grad():
        nll = float(model(roll, torch.tensor([1]))[0, 0])
    assert nll == pytest.approx(expected, abs=1e-5)


def test_midi_round_trip(tmp_path):
    piece = [(60, 64), (60, 64), (), (62,), (62, 67), (67,)]  # held, rest, overlapping notes
    path = tmp_path / "song.mid"
    path.write_bytes(midi_bytes(piece, steps_per_quarter=2, tempo=90, program=19))
    read, tracks = read_midi(path, steps_per_quarter=2)
    assert read == piece
    assert set(tracks) == {60, 62, 64, 67}
    import mido

    midi = mido.MidiFile(str(path))
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(90)
    onsets, tick = [], 0
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity:
            onsets.append((tick, message.note))
    step = midi.ticks_per_beat // 2
    assert onsets == [(0, 60), (0, 64), (3 * step, 62), (4 * step, 67)]


def test_generate_midi_png_reproducible_and_primed(chords, tmp_path, capsys):
    _, _, runs = chords
    prime = tmp_path / "prime.mid"
    prime.write_bytes(midi_bytes([C_MAJOR, C_MAJOR], steps_per_quarter=1))
    outputs = []
    for name in ("a", "b"):
        target = tmp_path / f"{name}.mid"
        assert main(["music", "generate", "--checkpoint", str(runs["bernoulli"]), "--steps",
                     "6", "--seed", "5", "--prime", str(prime), "--temperature", "0.5",
                     "--num-samples", "2", "--midi", str(target), "--report"]) == 0
        outputs.append([(tmp_path / f"{name}-{i}.mid").read_bytes() for i in (1, 2)])
        assert (tmp_path / f"{name}-1.png").read_bytes()[:4] == b"\x89PNG"
        page = (tmp_path / f"{name}-2.html").read_text()
        assert "Per-step likelihood" in page and page.count("data:image/png") == 2
    assert "a-1.mid\t8 steps" in capsys.readouterr().out
    assert outputs[0] == outputs[1]  # the same seed, the same music
    piece, _ = read_midi(tmp_path / "a-1.mid", steps_per_quarter=1)
    assert piece[:2] == [C_MAJOR, C_MAJOR]
    assert piece[2:4] == [G_MAJOR, G_MAJOR]  # the learnt progression continues the primer


def test_generate_json_steps_and_predict_per_step(chords, tmp_path, capsys):
    _, data, runs = chords
    out = tmp_path / "steps.json"
    assert main(["music", "generate", "--checkpoint", str(runs["nade"]), "--bars", "1",
                 "--seed", "1", "--temperature", "0.3", "--output", str(out)]) == 0
    steps = json.loads(out.read_text().splitlines()[0])
    assert len(steps) == 4 and steps[0] == list(C_MAJOR)
    assert main(["music", "predict", "--checkpoint", str(runs["nade"]), "--input",
                 str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "piece\tstep\tnll" and len(lines) == 1 + 64
    assert all(float(line.split("\t")[2]) < 3.0 for line in lines[1:])


def test_eval_reads_a_directory_of_midi_files(chords, tmp_path, capsys):
    _, _, runs = chords
    folder = tmp_path / "midis"
    folder.mkdir()
    for name in ("one.mid", "two.midi"):
        (folder / name).write_bytes(midi_bytes([tuple(s) for s in _progression(12)], 1))
    metrics = _metrics(capsys, "--checkpoint", str(runs["bernoulli"]), "--data", str(folder))
    assert metrics["pieces"] == 2 and metrics["steps"] == 24
    assert metrics["nll_per_step"] < 1.0


# ---------------------------------------------------------------------- ABC

TUNE = """X: {n}
T:Tune {n}
% a comment
M:4/4
L:1/8
K:G
"G"GABc d2B2|"D7"A2F2 "G"[G2B2]G2:|
"""


@pytest.fixture(scope="module")
def abc_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("abc")
    corpus = directory / "tunes.abc"
    corpus.write_text("\n".join(TUNE.format(n=n) for n in range(1, 31)))
    out = directory / "run"
    _train(["--train", str(corpus), "--valid", str(corpus), "--out", str(out),
            "--hidden-size", "32", "--embedding-size", "16", "--max-epochs", "15",
            "--batch-size", "5", "--lr", "2e-2", "--schedule", "constant"])
    return directory, corpus, out


def test_abc_tokens_and_text_round_trip(tmp_path):
    path = tmp_path / "one.abc"
    path.write_text(TUNE.format(n=7).replace("K:G", "K:Gmaj"))
    tune = read_abc(path)[0]
    assert tune.number == "7" and tune.line == 1
    assert tune.tokens[:3] == ["M:4/4", "L:1/8", "K:G"]
    assert tune.tokens[3:8] == ['"G"', "G", "A", "B", "c"]
    assert ":|" in tune.tokens and "d2" in tune.tokens and "[G2B2]" in tune.tokens
    again = tmp_path / "again.abc"
    again.write_text(tune_text(tune.tokens, 7))
    assert read_abc(again)[0].tokens == tune.tokens


def test_abc_model_generates_tunes_that_parse(abc_run, tmp_path, capsys):
    pytest.importorskip("music21")
    from rnnkit.apps.music_generate import abc_parses

    _, corpus, out = abc_run
    metrics = _metrics(capsys, "--checkpoint", str(out), "--data", str(corpus))
    assert metrics["bits_per_char"] < 0.5 and metrics["tunes"] == 30
    target = tmp_path / "gen.abc"
    args = ["music", "generate", "--checkpoint", str(out), "--prime", "M:4/4 L:1/8 K:Gmajor",
            "--num-samples", "3", "--seed", "2", "--temperature", "0.5"]
    assert main([*args, "--output", str(target)]) == 0
    text = target.read_text()
    tunes = read_abc(target)
    assert len(tunes) == 3 and all(t.tokens[:3] == ["M:4/4", "L:1/8", "K:G"] for t in tunes)
    assert all(abc_parses(tune_text(t.tokens)) for t in tunes)
    assert main(args) == 0
    assert capsys.readouterr().out == text  # reproducible with the seed


# ---------------------------------------------------------------------- bad input


def _fails(capsys, args: list[str], message: str, out: Path | None = None,
           also: str = "") -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and also in err and "Traceback" not in err
    assert err.count("\n") == 1
    if out is not None:
        assert not out.exists()


BAD_JSON = [
    ('{"train": [[[60, 64]]],\n "valid": [[["C"]]]}', "valid[0][0]: not the JSB layout"),
    ('{"train": [[[60, 64]]], "oops": 1}', "not the JSB layout: expected a key 'valid'"),
    ('{"train": [], "valid": []}', "train: no pieces (an empty corpus)"),
    ('{"train": [[[60, 64]]],\n "valid": [[[60]]]', ":2:19: not valid JSON"),
    ('{"train": [[[160]]], "valid": [[[60]]]}', "train[0][0]: not the JSB layout"),
    ('{"train": [[[10]]], "valid": [[[60]]]}', "step 0: pitch 10 outside the model's range"),
]


@pytest.mark.parametrize(("text", "message"), BAD_JSON)
def test_bad_jsb_files(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    out = tmp_path / "run"
    _fails(capsys, ["music", "train", "--train", str(path), "--out", str(out)],
           f"{path}", out, message)


def test_bad_midi_and_abc_inputs(tmp_path, capsys):
    out = tmp_path / "run"
    midis = tmp_path / "midis"
    midis.mkdir()
    (midis / "broken.mid").write_bytes(b"MThd not really a midi file")
    _fails(capsys, ["music", "train", "--train", str(midis), "--valid", str(midis), "--out",
                    str(out)], f"{midis / 'broken.mid'}: not a MIDI file that parses", out)
    no_key = tmp_path / "nokey.abc"
    no_key.write_text(TUNE.format(n=1) + "\n" + TUNE.format(n=2).replace("K:G\n", ""))
    _fails(capsys, ["music", "train", "--train", str(no_key), "--valid", str(no_key),
                    "--out", str(out)], f"{no_key}:9: tune X:2 has no K: (key) header", out)
    empty = tmp_path / "empty.abc"
    empty.write_text("% nothing here\n")
    _fails(capsys, ["music", "train", "--train", str(empty), "--valid", str(empty), "--out",
                    str(out)], "no tunes (an empty corpus", out)
    text = tmp_path / "x.txt"
    text.write_text("60 64 67\n")
    _fails(capsys, ["music", "train", "--train", str(text), "--out", str(out)],
           "cannot tell the format", out)


def test_bad_primers_leave_no_output(chords, tmp_path, capsys):
    _, _, runs = chords
    low = tmp_path / "low.mid"
    low.write_bytes(midi_bytes([(60,), (15,)], steps_per_quarter=1))
    target = tmp_path / "song.mid"
    base = ["music", "generate", "--checkpoint", str(runs["bernoulli"]), "--midi", str(target)]
    _fails(capsys, [*base, "--prime", str(low)],
           f"{low}: piece 0, track 0, step 1: pitch 15 outside the model's range 21-108",
           target)
    _fails(capsys, [*base, "--prime", str(tmp_path / "missing.mid")], "file not found", target)
    _fails(capsys, [*base, "--temperature", "0"], "--temperature: out of range", target)
    _fails(capsys, ["music", "generate", "--checkpoint", str(runs["bernoulli"]), "--midi",
                    str(tmp_path / "song.wav")], "expected a file name ending in .mid")


def test_unknown_abc_primer_header(abc_run, capsys):
    _, _, out = abc_run
    _fails(capsys, ["music", "generate", "--checkpoint", str(out), "--prime", "M:6/8 K:D"],
           "--prime: 'M:6/8' never seen in training (headers seen: K:G, M:4/4)")


def test_generate_output_takes_a_midi_name_or_a_text_file(chords, tmp_path):
    _, _, runs = chords
    midi = tmp_path / "song.mid"
    assert main(["music", "generate", "--checkpoint", str(runs["bernoulli"]), "--steps", "8",
                 "--seed", "1", "--output", str(midi)]) == 0
    import mido

    assert any(m.type == "note_on" for m in mido.MidiFile(str(midi)).tracks[-1])
    text = tmp_path / "steps.jsonl"
    assert main(["music", "generate", "--checkpoint", str(runs["bernoulli"]), "--steps", "8",
                 "--seed", "1", "--output", str(text)]) == 0
    assert len(json.loads(text.read_text().splitlines()[0])) == 8
