"""``rnnkit speech``: a synthetic two-tone "language" learned with CTC through the real CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import rnnkit.apps.speech  # noqa: F401  (registers the application)
from rnnkit.cli.main import main

soundfile = pytest.importorskip("soundfile")  # the speech extra
pytest.importorskip("librosa")
pytest.importorskip("jiwer")

RATE = 8000
TONES = {"a": 500.0, "b": 1500.0}  # one tone per symbol of the toy language


def tone(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def utterance(text: str, rng: random.Random) -> np.ndarray:
    """Each symbol a 0.12–0.18 s tone, with 0.04–0.1 s gaps of faint noise between."""
    noise = np.random.default_rng(rng.randrange(2**31))
    parts = []
    for symbol in text:
        parts.append(np.zeros(int(rng.uniform(0.04, 0.1) * RATE), dtype=np.float32))
        parts.append(tone(TONES[symbol], rng.uniform(0.12, 0.18)))
    parts.append(np.zeros(int(0.06 * RATE), dtype=np.float32))
    signal = np.concatenate(parts)
    return signal + 0.003 * noise.standard_normal(len(signal)).astype(np.float32)


def write_set(directory: Path, name: str, count: int, seed: int) -> Path:
    """``count`` utterances of 1–3 symbols as WAV files and their list file."""
    rng = random.Random(seed)
    folder = directory / name
    folder.mkdir()
    lines = []
    for number in range(count):
        text = "".join(rng.choice("ab") for _ in range(rng.randint(1, 3)))
        soundfile.write(folder / f"u{number}.wav", utterance(text, rng), RATE, subtype="PCM_16")
        lines.append(f"{name}/u{number}.wav\t{text}\n")
    listing = directory / f"{name}.tsv"
    listing.write_text("".join(lines))
    return listing


TRAIN_FLAGS = ["--sample-rate", str(RATE), "--n-mels", "20", "--cell", "gru", "--hidden-size",
               "32", "--num-layers", "1", "--conv-channels", "32", "--dropout", "0",
               "--batch-size", "8", "--max-epochs", "10", "--eval-every", "0", "--lr", "2e-2",
               "--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("speech")
    train = write_set(directory, "train", 80, seed=1)
    valid = write_set(directory, "valid", 24, seed=2)
    out = directory / "run"
    assert main(["speech", "train", "--train", str(train), "--valid", str(valid),
                 "--out", str(out), *TRAIN_FLAGS]) == 0
    return directory, valid, out


def test_learns_the_two_tone_language(trained, capsys):
    _, valid, out = trained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cers = [r["valid_cer"] for r in records if "valid_cer" in r]
    assert cers[0] > 0.5  # it starts out knowing nothing
    capsys.readouterr()
    assert main(["speech", "eval", "--checkpoint", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["utterances"] == 24
    assert metrics["cer"] < 0.1
    assert metrics["utterance_accuracy"] > 0.8
    assert 0 < metrics["real_time_factor"] < 1
    assert main(["speech", "eval", "--checkpoint", str(out), "--data", str(valid),
                 "--beam-size", "4", "--lexicon", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cer"] < 0.1


def test_transcribe_prints_text_and_probability_stably(trained, tmp_path, capsys):
    directory, valid, out = trained
    lines = valid.read_text().splitlines()[:8]
    audio = ",".join(str(directory / line.split("\t")[0]) for line in lines)
    runs = []
    for _ in range(2):
        assert main(["speech", "transcribe", "--checkpoint", str(out), "--audio", audio,
                     "--beam-size", "4"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1]
    rows = [row.split("\t") for row in runs[0].splitlines()]
    assert [name for name, *_ in rows] == audio.split(",")
    right = sum(text == line.split("\t")[1] for (_, text, _, _), line in zip(rows, lines))
    assert right >= 6
    for _, _, log_prob, prob in rows:
        assert float(log_prob) <= 0 and abs(float(prob) - np.exp(float(log_prob))) < 1e-3
    target = tmp_path / "out.tsv"
    assert main(["speech", "predict", "--checkpoint", str(out), "--audio",
                 audio.split(",")[0], "--output", str(target)]) == 0
    assert target.read_text().split("\t")[0] == audio.split(",")[0]
    files = audio.split(",")
    assert main(["speech", "transcribe", "--checkpoint", str(out), *files[:3],
                 "--beam-size", "4", "--audio", ",".join(files[3:])]) == 0  # bare files first
    assert capsys.readouterr().out == runs[0]


def test_transcribe_without_audio_says_so(trained, capsys):
    _, _, out = trained
    assert main(["speech", "transcribe", "--checkpoint", str(out)]) == 2
    assert "no audio given" in capsys.readouterr().err


def test_report_shows_the_spectrogram_and_posteriors(trained, tmp_path):
    directory, _, out = trained
    page = tmp_path / "report.html"
    assert main(["speech", "report", "--checkpoint", str(out), "--audio",
                 str(directory / "valid" / "u0.wav"), "--output", str(page)]) == 0
    html = page.read_text()
    assert "Spectrogram and CTC posteriors" in html and "data:image/png;base64," in html
    assert "log p(text | audio)" in html
    inspected = tmp_path / "inspect.html"  # the same page through rnnkit inspect
    assert main(["inspect", "--checkpoint", str(out), "--text",
                 str(directory / "valid" / "u0.wav"), "--out", str(inspected)]) == 0
    html = inspected.read_text()
    assert "Spectrogram and CTC posteriors" in html and "Hidden units over the input" in html


# ---------------------------------------------------------------------- bad input


def _train_fails(tmp_path: Path, listing: Path, capsys) -> str:
    out = tmp_path / "run"
    assert main(["speech", "train", "--train", str(listing), "--out", str(out),
                 "--sample-rate", str(RATE), "--max-steps", "1", "--no-progress",
                 "--no-tensorboard", "--no-plot"]) == 2
    assert not out.exists()
    return capsys.readouterr().err


def _listing(tmp_path: Path, wav: Path, text: str = "ab") -> Path:
    good = tmp_path / "good.wav"
    soundfile.write(good, utterance("ab", random.Random(3)), RATE, subtype="PCM_16")
    listing = tmp_path / "list.tsv"
    listing.write_text(f"good.wav\tab\n{wav.name}\t{text}\n")
    return listing


@pytest.mark.parametrize("kind, message", [
    ("text", "not a readable audio file"),
    ("truncated", "truncated WAV file"),
    ("silent", "the recording is silent"),
    ("empty", "the file holds 0 samples"),
])
def test_bad_audio_names_the_file(tmp_path, capsys, kind, message):
    wav = tmp_path / "bad.wav"
    if kind == "text":
        wav.write_text("this is not audio\n")
    elif kind == "truncated":
        soundfile.write(wav, tone(500, 0.5), RATE, subtype="PCM_16")
        wav.write_bytes(wav.read_bytes()[:3000])
    elif kind == "silent":
        soundfile.write(wav, np.zeros(4000, dtype=np.float32), RATE, subtype="PCM_16")
    else:
        soundfile.write(wav, np.zeros(0, dtype=np.float32), RATE, subtype="PCM_16")
    err = _train_fails(tmp_path, _listing(tmp_path, wav), capsys)
    assert f"{wav}: {message}" in err and "Traceback" not in err


def test_list_naming_a_missing_file(tmp_path, capsys):
    err = _train_fails(tmp_path, _listing(tmp_path, tmp_path / "gone.wav"), capsys)
    assert f"{tmp_path / 'list.tsv'}:2: audio file gone.wav not found" in err


def test_transcript_outside_the_alphabet(trained, tmp_path, capsys):
    _, _, out = trained
    wav = tmp_path / "x.wav"
    soundfile.write(wav, utterance("ab", random.Random(4)), RATE, subtype="PCM_16")
    listing = _listing(tmp_path, wav, text="abz")
    assert main(["speech", "eval", "--checkpoint", str(out), "--data", str(listing)]) == 2
    err = capsys.readouterr().err
    assert f"{listing}:2: transcript character 'z' (column 3) is not in the alphabet" in err


def test_transcribe_bad_file(trained, tmp_path, capsys):
    _, _, out = trained
    target = tmp_path / "out.tsv"
    assert main(["speech", "transcribe", "--checkpoint", str(out), "--audio",
                 str(tmp_path / "nope.wav"), "--output", str(target)]) == 2
    assert f"{tmp_path / 'nope.wav'}: audio file not found" in capsys.readouterr().err
    assert not target.exists()


def test_speed_perturbation_adds_faster_and_slower_copies(trained):
    from rnnkit.apps.speech import Alphabet, SpeechConfig, featurize
    from rnnkit.data.audio import read_dataset

    _, valid, _ = trained
    utterances = read_dataset(str(valid), "--valid")[:3]
    config = SpeechConfig(sample_rate=RATE, n_mels=20, speed_perturb="0.9,1.1")
    items = featurize(utterances, Alphabet.build(utterances), config, config.speeds())
    assert len(items) == 9
    for number in range(3):
        normal, slower, faster = (len(items[3 * number + k][0]) for k in range(3))
        assert faster < normal < slower
        assert items[3 * number][1] == items[3 * number + 1][1] == items[3 * number + 2][1]


def test_ensemble_of_checkpoints(trained, tmp_path, capsys):
    import shutil

    _, valid, out = trained
    capsys.readouterr()
    assert main(["speech", "eval", "--checkpoint", str(out), "--beam-size", "4", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    # a mixture of a model with itself is the model: the same transcripts and probabilities
    assert main(["speech", "eval", "--checkpoint", str(out), "--checkpoint", str(out),
                 "--beam-size", "4", "--json"]) == 0
    twice = json.loads(capsys.readouterr().out)
    assert twice["cer"] == single["cer"] and twice["wer"] == single["wer"]
    assert twice["mean_log_prob"] == pytest.approx(single["mean_log_prob"], abs=1e-9)
    assert main(["speech", "report", "--checkpoint", str(out), "--checkpoint", str(out),
                 "--audio", str(next(valid.parent.glob("valid/*.wav"))), "--output",
                 str(tmp_path / "r.html")]) == 2
    assert "give one --checkpoint" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(out, other)
    for alphabet in other.rglob("alphabet.json"):
        data = json.loads(alphabet.read_text())
        alphabet.write_text(json.dumps({**data, "words": data["words"] + ["zz"]}))
    assert main(["speech", "eval", "--checkpoint", str(out), "--checkpoint", str(other),
                 "--json"]) == 2
    assert "its alphabet (alphabet.json) differs" in capsys.readouterr().err
