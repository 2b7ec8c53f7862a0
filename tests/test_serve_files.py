"""``rnnkit serve`` with files: a WAV file sent to a speech model, a MIDI file made by a music
model's ``generate`` route; the file options a client may not set, bad uploads, routes that do
not exist, and the temporary directory removed after each call."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from deploy_runs import app_runs, tone_wav
from rnnkit.cli.main import main
from rnnkit.deploy import server as srv
from test_serve import running

httpx = pytest.importorskip("httpx", reason="httpx not installed (test extra)")
pytest.importorskip("starlette", reason="starlette not installed (serve extra)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return app_runs(tmp_path_factory, "speech", "music")


@pytest.fixture(scope="module")
def served(runs):
    models = srv.load_models(srv.ServeConfig([str(runs["speech"]), str(runs["music"])]))
    with running(models) as base:
        yield base, models


@pytest.fixture
def directories(monkeypatch):
    """The temporary directories the server makes during a test."""
    made = []
    original = srv.tempfile.mkdtemp

    def recording(*args, **kwargs):
        made.append(Path(original(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(srv.tempfile, "mkdtemp", recording)
    return made


def test_routes_are_described(served):
    base, _ = served
    listed = {m["name"]: m for m in httpx.get(f"{base}/v1/models").json()["models"]}
    speech, music = listed["speech"]["routes"], listed["music"]["routes"]
    assert speech["predict"]["uploads"] == {"audio": ".wav"} and not speech["predict"]["text"]
    assert "audio" not in {o["name"] for o in speech["predict"]["options"]}
    assert music["generate"]["downloads"] == {"midi": "song.mid"}
    assert {"predict", "generate"} <= set(music)


def test_a_wav_file_is_transcribed(served, tmp_path, directories):
    base, models = served
    wav = tone_wav(tmp_path / "x.wav", "ba", seed=7)
    response = httpx.post(f"{base}/v1/speech/predict", timeout=60, json={
        "uploads": {"audio": base64.b64encode(wav.read_bytes()).decode()}, "beam_size": 2})
    assert response.status_code == 200, response.text
    speech = models["speech"]
    options = dataclasses.replace(speech.options({"beam_size": 2}), audio=str(wav))
    expected = "".join(speech.run(options, "")).replace(str(wav), "audio.wav")
    assert response.json()["output"] == expected
    assert "files" not in response.json()
    # a data: URL is taken too (what a browser's FileReader gives)
    url = "data:audio/wav;base64," + base64.b64encode(wav.read_bytes()).decode()
    again = httpx.post(f"{base}/v1/speech/transcribe", json={"uploads": {"audio": url},
                                                            "beam_size": 2}, timeout=60)
    assert again.status_code == 200 and again.json()["output"] == expected
    assert len(directories) == 2 and not any(d.exists() for d in directories)


def test_generate_answers_with_the_midi_file(served, runs, tmp_path, capsys, directories):
    base, _ = served
    response = httpx.post(f"{base}/v1/music/generate", json={"steps": 10, "seed": 2},
                          timeout=60)
    assert response.status_code == 200, response.text
    files = {f["name"]: f for f in response.json()["files"]}
    assert set(files) == {"song.mid", "song.png"}
    assert files["song.mid"]["type"] == "audio/midi" and files["song.png"]["type"] == "image/png"
    assert main(["music", "generate", "--checkpoint", str(runs["music"]), "--steps", "10",
                 "--seed", "2", "--midi", str(tmp_path / "song.mid")]) == 0
    capsys.readouterr()
    assert base64.b64decode(files["song.mid"]["data"]) == (tmp_path / "song.mid").read_bytes()
    assert str(directories[0]) not in response.json()["output"]
    assert not directories[0].exists()


@pytest.mark.parametrize("route, body, status, message", [
    ("speech/predict", {"audio": "/etc/passwd.wav"}, 422, "file options are not accepted"),
    ("speech/predict", {"files": ["/etc/x.wav"]}, 422, "file options are not accepted"),
    ("music/generate", {"midi": "/tmp/x.mid"}, 422, "file options are not accepted"),
    ("music/generate", {"prime": "/etc/x.mid"}, 422, "file options are not accepted"),
    ("speech/predict", {"uploads": {"audio": "not base64!"}}, 400, "not valid base64"),
    ("speech/predict", {"uploads": {"other": "AAAA"}}, 422, "other not accepted"),
    ("speech/predict", {"uploads": ["AAAA"]}, 422, "expected an object"),
    ("music/predict", {"uploads": {"input": "AAAA"}}, 422, "accepted: none"),
    ("music/generate", {"stream": True}, 422, "answers with files"),
    ("music/generate", {"text": "C E G"}, 422, "reads no input text"),
    ("music/nope", {}, 404, "unknown route 'nope'"),
    ("speech/predict", {"uploads": {"audio": "AAAA"}}, 422, "audio.wav"),  # not a WAV file
])
def test_bad_file_requests(served, route, body, status, message):
    base, _ = served
    response = httpx.post(f"{base}/v1/{route}", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "rnnkit-serve-" not in response.json()["error"]  # no temporary path shown
