"""``rnnkit serve``: the server started in-process on a free loopback port (uvicorn in a thread)
with the four applications: every route, streaming, the 4xx/5xx answers, the queue bound, the
timeout, the page, and a graceful stop on SIGTERM (a real ``rnnkit serve`` process)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy_runs import trained_runs
from rnnkit.cli.main import main
from rnnkit.deploy import server as srv

httpx = pytest.importorskip("httpx", reason="httpx not installed (test extra)")
pytest.importorskip("starlette", reason="starlette not installed (serve extra)")
pytest.importorskip("uvicorn", reason="uvicorn not installed (serve extra)")

APPS = ("lm", "classify", "tag", "translate")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def models(runs):
    return srv.load_models(srv.ServeConfig([str(runs[a]) for a in APPS]))


@contextlib.contextmanager
def running(models, **options):
    """The server on 127.0.0.1 at a free port, in a thread; yields its base URL."""
    import uvicorn

    config = srv.ServeConfig(["-"], **options)
    app = srv.create_app(models, config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def url(models):
    with running(models, max_body=2000) as base:
        yield base


def test_health_and_models(url):
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["models"] == list(APPS)
    listed = {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()["models"]}
    assert [listed[a]["application"] for a in APPS] == list(APPS)
    lm_options = {o["name"]: o["default"] for o in listed["lm"]["options"]}
    assert lm_options["max_tokens"] == 200
    assert "input" not in {o["name"] for o in listed["classify"]["options"]}  # a file option


def test_predict_each_application(url):
    answers = {}
    bodies = {"lm": {"text": "abc", "max_tokens": 5, "seed": 1},
              "classify": {"text": "a good film\nthe dull movie"},
              "tag": {"text": "the\ngood\nfilm\n", "format": "conll"},
              "translate": {"text": "the good film", "beam_size": 2}}
    for app, body in bodies.items():
        response = httpx.post(f"{url}/v1/{app}/predict", json=body, timeout=30)
        assert response.status_code == 200, response.text
        answers[app] = response.json()
        assert answers[app]["model"] == app
    assert answers["lm"]["output"].startswith("abc")
    lines = answers["classify"]["output"].splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("pos", "neg")
    assert lines[0].endswith("a good film")
    tagged = [line.split() for line in answers["tag"]["output"].splitlines() if line]
    assert [t[0] for t in tagged] == ["the", "good", "film"]
    assert all(t[-1] in ("ADJ", "X") for t in tagged)
    assert len(answers["translate"]["output"].splitlines()) == 1
    # the same request twice gives the same sample (seeded)
    again = httpx.post(f"{url}/v1/lm/predict", json=bodies["lm"], timeout=30).json()
    assert again == answers["lm"]


def test_streamed_generation(url):
    body = {"text": "ab", "max_tokens": 12, "seed": 2, "stream": True}
    pieces = []
    with httpx.stream("POST", f"{url}/v1/lm/predict", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        pieces = list(response.iter_text())
    whole = httpx.post(f"{url}/v1/lm/predict", json={**body, "stream": False}).json()["output"]
    assert "".join(pieces) == whole


@pytest.mark.parametrize("content, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"text": "x", "max_tokens": "many"}', 422, "expected int"),
    (b'{"text": "x", "beams": 3}', 422, "unknown option(s): beams"),
    (b'{"text": 3}', 422, "text: expected a string"),
])
def test_bad_requests_to_lm(url, content, status, message):
    response = httpx.post(f"{url}/v1/lm/predict", content=content,
                          headers={"content-type": "application/json"})
    assert response.status_code == status
    if message:
        assert message in response.json()["error"]


def test_file_options_are_refused(url):
    for body in ({"input": "/etc/passwd"}, {"attention_out": "/tmp/x.jsonl", "text": "a"}):
        name = "classify" if "input" in body else "translate"
        response = httpx.post(f"{url}/v1/{name}/predict", json=body)
        assert response.status_code == 422
        assert "file options are not accepted" in response.json()["error"]


def test_unknown_model_and_oversized_body(url):
    response = httpx.post(f"{url}/v1/nope/predict", json={"text": "a"})
    assert response.status_code == 404 and "unknown model 'nope'" in response.json()["error"]
    big = {"text": "a " * 2000}
    response = httpx.post(f"{url}/v1/classify/predict", json=big)
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b" " * 500

    response = httpx.post(f"{url}/v1/classify/predict", content=chunks())
    assert response.status_code == 413
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # still serving


def test_bad_input_text_is_422_naming_the_text(url):
    response = httpx.post(f"{url}/v1/tag/predict",
                          json={"text": "the\tgood\textra\n", "format": "conllu"})
    assert response.status_code == 422
    assert "text" in response.json()["error"] and "/tmp" not in response.json()["error"]


def test_queue_bound_gives_503_with_retry_after(models, monkeypatch):
    gate = threading.Event()
    original = srv.Served.run

    def slow(self, options, text, *rest):
        gate.wait(20)
        return original(self, options, text, *rest)

    monkeypatch.setattr(srv.Served, "run", slow)
    with running(models, workers=1, queue_size=1) as base:
        results = []

        def post():
            results.append(httpx.post(f"{base}/v1/classify/predict", json={"text": "a good"},
                                      timeout=30))

        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 10
        while httpx.get(f"{base}/health").json()["admitted"] < 2 and time.time() < deadline:
            time.sleep(0.02)
        refused = httpx.post(f"{base}/v1/classify/predict", json={"text": "a good"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        gate.set()
        for thread in threads:
            thread.join(30)
        assert [r.status_code for r in results] == [200, 200]
        state = httpx.get(f"{base}/health").json()
        assert state["refused"] == 1 and state["admitted"] == 0


def test_timeout_gives_504(models, monkeypatch):
    gate = threading.Event()
    original = srv.Served.run

    def stuck(self, options, text, *rest):
        gate.wait(20)
        return original(self, options, text, *rest)

    monkeypatch.setattr(srv.Served, "run", stuck)
    with running(models, timeout=0.3) as base:
        response = httpx.post(f"{base}/v1/classify/predict", json={"text": "a"}, timeout=30)
        assert response.status_code == 504 and "timed out" in response.json()["error"]
        gate.set()


def test_page_is_served(url):
    response = httpx.get(url + "/")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    assert '<select id="model">' in response.text and "/v1/models" in response.text
    assert "http" not in response.text.split("<script>")[1]  # nothing fetched elsewhere


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine")
def test_page_loads_in_headless_chromium(url):
    dom = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox",
                          "--virtual-time-budget=5000", "--dump-dom", url + "/"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "classify (classify)" in dom  # the model list was fetched and shown


NODE = shutil.which("node")

# A minimal DOM for the page's script: elements by id, <option>s, click and change events.
NODE_DOM = """
const elements = {};
function element(id) {
  return elements[id] ??= {id, value: "", textContent: "", className: "", checked: false,
    children: [], listeners: {}, append(child) { this.children.push(child);
      if (this.value === "") this.value = child.value; },
    replaceChildren() { this.children = []; this.value = ""; },
    addEventListener(type, fn) { this.listeners[type] = fn; }};
}
globalThis.document = {getElementById: element,
  createElement: () => ({value: "", textContent: ""})};
"""


@pytest.mark.skipif(NODE is None, reason="node not installed")
def test_page_script_makes_a_prediction_that_appears(url, tmp_path):
    """The page's own script, run by node against the live server: the model list is filled,
    a text typed and Run clicked put the model's answer in the output element."""
    script = srv.PAGE.split("<script>")[1].split("</script>")[0]
    served = f"""
const base = {json.dumps(url)};
const realFetch = fetch;
globalThis.fetch = (path, init) => realFetch(base + path, init);
"""
    driver = NODE_DOM + served + script.replace("load();\n", "") + """
(async () => {{
  await load();
  const names = $("model").children.map(o => o.textContent);
  $("model").value = String(names.indexOf("classify (classify)"));
  show($("model").value);
  $("text").value = "a good film";
  await run();
  console.log(JSON.stringify({{names, options: JSON.parse($("options").value),
                              output: $("output").textContent}}));
}})();
""".replace("{{", "{").replace("}}", "}")
    (tmp_path / "page.js").write_text(driver)
    done = subprocess.run([NODE, str(tmp_path / "page.js")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["names"] == [f"{a} ({a})" for a in APPS]
    assert shown["options"]["batch_size"] == 64  # the classifier's defaults, prefilled
    label, _, text = shown["output"].strip().split("\t")
    assert label in ("pos", "neg") and text == "a good film"


def test_config_errors(runs, capsys, tmp_path):
    assert main(["serve", "--checkpoint", str(runs["lm"]), "--workers", "0"]) == 2
    assert "--workers: expected an integer >= 1" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(runs["lm"]), "--checkpoint", str(runs["lm"]),
                 "--port", "0"]) == 2
    assert "served already; give --name" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(runs["lm"]), "--name", "a/b"]) == 2
    assert "part of the URL" in capsys.readouterr().err


def test_sigterm_finishes_the_request_in_flight(runs):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", "--checkpoint",
                                str(runs["lm"]), "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        # start-up imports torch and loads the model: seconds when idle, minutes on a loaded
        # machine (144 s measured at load 6.5), so wait generously but fail clearly
        deadline = time.time() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"rnnkit serve exited with {process.returncode} before it was up")
            if time.time() > deadline:
                pytest.fail("rnnkit serve did not answer /health within 300 s")
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        result = []
        started = time.time()
        request = threading.Thread(target=lambda: result.append(httpx.post(
            f"{base}/v1/lm/predict", json={"text": "a", "max_tokens": 1500}, timeout=60)))
        request.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        request.join(60)
        # uvicorn ends by re-raising the signal once the requests in flight are answered
        assert process.wait(60) in (0, -signal.SIGTERM)
        assert result and result[0].status_code == 200
        assert time.time() - started > 0.5  # it was still running when SIGTERM came
        assert len(result[0].json()["output"]) > 1000
    finally:
        if process.poll() is None:
            process.kill()
