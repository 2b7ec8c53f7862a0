"""The page of ``rnnkit serve`` driven in headless Chromium (the DevTools protocol over
``--remote-debugging-pipe``; skipped without Chromium): a text classified through the page
appears on it; a WAV file chosen in the page's file input is transcribed as the speech model
transcribes it; a piano-roll model's generated MIDI file is offered for download with the same
bytes as ``rnnkit music generate`` writes, and the page's MIDI reader finds the notes mido
finds (the player plays them)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy_runs import app_runs, tone_wav, trained_runs
from rnnkit.cli.main import main
from rnnkit.deploy import server as srv
from test_serve import running

pytest.importorskip("starlette", reason="starlette not installed (serve extra)")
pytest.importorskip("uvicorn", reason="uvicorn not installed (serve extra)")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine")


def _high(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """Headless Chromium driven over the DevTools pipe (fd 3: commands in, fd 4: replies)."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        # above 4, so that moving them to 3 and 4 in the child never closes one of them
        to_browser, from_browser = (_high(fd) for fd in (to_browser, from_browser))
        command = (f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- '
                   f'{from_browser}>&-')
        self.process = subprocess.Popen(
            ["bash", "-c", command, CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
             "--autoplay-policy=no-user-gesture-required", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._next, self._buffer, self.session = 0, b"", None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def send(self, method: str, **params):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str):
        """The value of an (async) JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=f"(async () => {{ {expression} }})()",
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait(self, condition: str, seconds: float = 60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            value = self.js(f"return {condition};")
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {condition}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._write)
        os.close(self._read)


SELECT = """const i = models.findIndex(m => m.name === {model!r});
$("model").value = String(i); show(i); $("route").value = {route!r}; showRoute();"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    runs = {**trained_runs(tmp_path_factory), **app_runs(tmp_path_factory, "speech", "music")}
    models = srv.load_models(srv.ServeConfig(
        [str(runs[n]) for n in ("classify", "speech", "music")]))
    profile = tmp_path_factory.mktemp("chromium-profile")
    with running(models) as base:
        browser = Browser(profile)
        try:
            browser.send("Page.navigate", url=base + "/")
            browser.wait('typeof models !== "undefined" && models.length === 3')
            yield browser, models, runs
        finally:
            browser.close()


def test_a_text_classified_through_the_page_appears_on_it(page):
    browser, models, _ = page
    browser.js(SELECT.format(model="classify", route="predict")
               + '$("text").value = "a good film\\nthe dull movie"; $("run").click();')
    shown = browser.wait('$("output").textContent')
    options = models["classify"].options({})
    assert shown == "".join(models["classify"].run(options, "a good film\nthe dull movie"))
    assert len(shown.splitlines()) == 2


def test_a_wav_file_chosen_in_the_page_is_transcribed(page, tmp_path):
    browser, models, _ = page
    wav = tone_wav(tmp_path / "audio.wav", "ab", seed=3)
    data = base64.b64encode(wav.read_bytes()).decode()
    assert browser.js(SELECT.format(model="speech", route="predict") + 'return $("upload").hidden;'
                      ) is False
    browser.js(f"""const bytes = Uint8Array.from(atob("{data}"), c => c.charCodeAt(0));
        const chosen = new DataTransfer();
        chosen.items.add(new File([bytes], "mine.wav", {{type: "audio/wav"}}));
        $("file").files = chosen.files; $("run").click();""")
    shown = browser.wait('$("output").textContent')
    speech = models["speech"]
    options = speech.options({})
    import dataclasses

    expected = "".join(speech.run(dataclasses.replace(options, audio=str(wav)), ""))
    assert shown == expected.replace(str(wav), "audio.wav")
    assert shown.startswith("audio.wav\t") and str(tmp_path) not in shown


def test_generated_midi_is_offered_and_read_by_the_page(page, tmp_path, capsys):
    browser, _, runs = page
    browser.js(SELECT.format(model="music", route="generate")
               + '$("options").value = JSON.stringify({steps: 12, seed: 4, temperature: 1.0});'
               + '$("run").click();')
    browser.wait('$("output").textContent || $("files").children.length')
    assert browser.js('return $("output").className;') == "", browser.js(
        'return $("output").textContent;')
    names = browser.js('return [...document.querySelectorAll("#files a")].map(a => a.download);')
    assert names == ["song.mid", "song.png"]
    assert browser.js('return document.querySelectorAll("#files button.play").length;') == 1
    assert browser.js('return document.querySelectorAll("#files img").length;') == 1
    served = browser.js("""const link = document.querySelector('#files a[download="song.mid"]');
        const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
        return {data: btoa(String.fromCharCode(...bytes)),
                notes: parseMidi(bytes).map(n => [n.pitch, n.start, n.end]),
                played: playMidi(bytes)};""")
    midi = tmp_path / "song.mid"
    assert main(["music", "generate", "--checkpoint", str(runs["music"]), "--steps", "12",
                 "--seed", "4", "--midi", str(midi)]) == 0
    capsys.readouterr()
    assert base64.b64decode(served["data"]) == midi.read_bytes()  # the CLI's file, same seed
    mido = pytest.importorskip("mido")
    notes, now, open_ = [], 0.0, {}
    for message in mido.MidiFile(str(midi)):  # seconds, with the file's tempo
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            open_.setdefault(message.note, []).append(now)
        elif message.type in ("note_on", "note_off") and open_.get(message.note):
            notes.append((message.note, open_[message.note].pop(0), now))
    got = sorted((p, round(s, 6), round(e, 6)) for p, s, e in served["notes"])
    assert got == sorted((p, round(s, 6), round(e, 6)) for p, s, e in notes)
    assert served["played"] == len(notes) > 0
