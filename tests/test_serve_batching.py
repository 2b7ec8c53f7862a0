"""``rnnkit serve`` batching: concurrent classify and tag requests run as one padded batch, each
answer identical to the one the request gets alone; a bad text among them is answered 422 alone
while the others still succeed; cutting texts and outputs into units."""

from __future__ import annotations

import threading

import pytest

from deploy_runs import trained_runs
from rnnkit.deploy import batching as bt
from rnnkit.deploy import server as srv
from test_serve import running

httpx = pytest.importorskip("httpx", reason="httpx not installed (test extra)")
pytest.importorskip("starlette", reason="starlette not installed (serve extra)")

CLASSIFY = ["a good film", "the dull movie\nbad plot is bad\n\n  \nfun", "great", "awful film",
            "the movie was nice\nthe film was poor", "good good good bad", "a", "dull dull"]
TAG = ["the\ngood\nfilm\n", "bad\nmovie\n\nthe\nfun\nfilm\nis\ngood\n", "nice\n",
       "a\nfilm\n\n\nwas\ndull\n", "great\nfun\n"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    runs = trained_runs(tmp_path_factory)
    return srv.load_models(srv.ServeConfig([str(runs["classify"]), str(runs["tag"])]))


def test_units_and_cutting():
    assert bt.split_units("a\n\n  \nb c\n", "line") == ["a", "b c"]
    assert bt.split_units("x 1\ny 2\n\n \n\nz 3\n", "block") == ["x 1\ny 2", "z 3"]
    assert bt.join_units(["x 1\ny 2", "z 3"], "block") == "x 1\ny 2\n\nz 3\n"
    assert bt.split_output("p\nq\nr\n", "line", [1, 2]) == ["p\n", "q\nr\n"]
    assert bt.split_output("p\nq\n", "line", [1, 2]) is None  # a unit missing
    assert bt.split_output("a X\n\nb X\nc X\n\n", "block", [1, 1]) == ["a X\n\n",
                                                                       "b X\nc X\n\n"]
    assert bt.unit_of(type("A", (), {"name": "lm"})()) == ""
    assert bt.unit_of(type("A", (), {"name": "x", "batch_unit": "line"})()) == "line"


def _alone(served, body) -> str:
    options = served.options({k: v for k, v in body.items() if k != "text"})
    return "".join(served.run(options, body["text"]))


def _concurrently(base: str, requests: list[tuple[str, dict]]) -> list:
    answers: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def post(index: int, model: str, body: dict) -> None:
        with httpx.Client(timeout=60) as client:
            start.wait()
            answers[index] = client.post(f"{base}/v1/{model}/predict", json=body)

    threads = [threading.Thread(target=post, args=(i, m, b)) for i, (m, b) in
               enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_concurrent_requests_run_as_one_batch_with_the_same_answers(models, monkeypatch):
    requests = [("classify", {"text": t}) for t in CLASSIFY]
    requests += [("tag", {"text": t, "format": "conll"}) for t in TAG]
    expected = [_alone(models[m], b) for m, b in requests]
    calls = []
    original = srv.Served.run

    def counted(self, options, text, *rest):
        calls.append((self.name, text))
        return original(self, options, text, *rest)

    monkeypatch.setattr(srv.Served, "run", counted)
    with running(models, max_batch=32, batch_wait=400, queue_size=32) as base:
        answers = _concurrently(base, requests)
        state = httpx.get(f"{base}/health").json()
    assert [a.status_code for a in answers] == [200] * len(requests)
    assert [a.json()["output"] for a in answers] == expected
    merged = state["batching"]
    assert merged["classify"]["batches"] >= 1 and merged["tag"]["batches"] >= 1
    assert merged["classify"]["requests"] + merged["tag"]["requests"] >= 4
    assert len(calls) < len(requests)  # fewer predict calls than requests
    assert any(name == "classify" and text.count("\n") >= 4 for name, text in calls)


def test_a_bad_text_in_a_batch_fails_alone(models):
    requests = [("tag", {"text": t, "format": "conll"}) for t in TAG[:3]]
    requests.append(("tag", {"text": "the\tgood\textra\n", "format": "conllu"}))
    requests.append(("tag", {"text": "a\tX\tY\nbad\tX\n", "format": "conll"}))
    with running(models, max_batch=32, batch_wait=400) as base:
        answers = _concurrently(base, requests)
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert [a.json()["output"] for a in answers[:3]] == [_alone(models["tag"], b)
                                                         for _, b in requests[:3]]
    assert answers[3].status_code == 422 and "text" in answers[3].json()["error"]
    assert answers[4].status_code == 422


def test_without_batching_every_request_runs_alone(models, monkeypatch):
    calls = []
    original = srv.Served.run

    def counted(self, options, text, *rest):
        calls.append(text)
        return original(self, options, text, *rest)

    monkeypatch.setattr(srv.Served, "run", counted)
    requests = [("classify", {"text": t}) for t in CLASSIFY[:4]]
    with running(models, max_batch=1) as base:
        answers = _concurrently(base, requests)
        assert httpx.get(f"{base}/health").json()["batching"] == {}
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(calls) == sorted(CLASSIFY[:4])
