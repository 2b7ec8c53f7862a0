"""``rnnkit serve``: trained models behind a JSON HTTP API (Starlette + uvicorn) and a page.

One model per checkpoint, named after its run directory (or ``--name``). Routes:

- ``POST /v1/{name}/predict``: body ``{"text": "...", "stream": false, OPTION: value, …}``,
  the options being the fields of the application's ``PredictOptions`` (the flags of
  ``rnnkit APP predict``, with underscores), validated as the command line validates them.
  The text goes where ``predict`` would read its input
  (:meth:`~rnnkit.apps.base.Application.predict_text`). Answer ``{"model", "output"}``; with
  ``"stream": true`` the output is streamed as plain text, piece by piece as the application
  yields it (generation: token by token).
- ``GET /v1/models``: each model's application, summary and options (defaults, help, choices).
- ``GET /health``: ``{"status": "ok", …}`` with the queue's state.
- ``GET /``: a page to try each model (plain HTML and JS served from here, nothing fetched
  elsewhere).

Load and failure behaviour: at most ``workers`` predictions run at once (threads) and at most
``queue_size`` more wait; beyond, ``503`` with ``Retry-After``. A request waiting or running
longer than ``timeout`` seconds gets ``504`` (the prediction itself finishes in the background
and still counts against the queue until it does). Bodies over ``max_body`` bytes: ``413``;
malformed JSON: ``400``; unknown model: ``404``; bad options or input text: ``422`` with the
message ``rnnkit`` would print. Options naming files (``input``, ``output``, ``…_out``,
``…_png``, …) are refused: the server never reads or writes a path a client gives. uvicorn ends
on SIGTERM/SIGINT after the requests in flight (up to ``timeout`` more seconds).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit.apps import runner
from rnnkit.apps.base import Application
from rnnkit.deploy import require
from rnnkit.deploy.page import PAGE
from rnnkit.errors import RnnkitError
from rnnkit.train.config import build_config, check_unknown_keys, leaf_fields

__all__ = ["ServeConfig", "Served", "load_models", "create_app", "serve", "PAGE"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# option names that hold file paths: never taken from a request
PATH_OPTION = re.compile(r"^(input|output|data|src|ref)$|_(out|png|file|path|dir)$")
RESERVED = ("text", "stream")


@dataclass
class ServeConfig:
    """Options of ``rnnkit serve``."""

    checkpoints: list[str]
    names: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    workers: int = 1  # predictions running at once
    queue_size: int = 16  # predictions waiting beyond those
    timeout: float = 30.0  # seconds a request may wait and run
    max_body: int = 1_000_000  # bytes
    threads: int = 1  # torch threads

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise RnnkitError("--checkpoint: required (one per model to serve)")
        if len(self.names) > len(self.checkpoints):
            raise RnnkitError(f"--name: given {len(self.names)} times for "
                              f"{len(self.checkpoints)} --checkpoint")
        for flag, value in (("--workers", self.workers), ("--threads", self.threads),
                            ("--max-body", self.max_body)):
            if value < 1:
                raise RnnkitError(f"{flag}: expected an integer >= 1, got {value}")
        if self.queue_size < 0:
            raise RnnkitError(f"--queue-size: expected an integer >= 0, got {self.queue_size}")
        if not self.timeout > 0:
            raise RnnkitError(f"--timeout: expected seconds > 0, got {self.timeout}")
        if not 0 <= self.port <= 65535:
            raise RnnkitError(f"--port: expected 0..65535, got {self.port}")


@dataclass
class Served:
    """One loaded model: its name in the URL, its application and what ``load`` returned."""

    name: str
    app: Application
    loaded: Any
    checkpoint: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "application": self.app.name, "summary": self.app.summary,
                "checkpoint": self.checkpoint, "options": _options_of(self.app.PredictOptions)}

    def options(self, values: dict[str, Any]) -> Any:
        """The application's ``PredictOptions`` from a request body (RnnkitError: 422)."""
        refused = sorted(k for k in values if PATH_OPTION.search(k))
        if refused:
            raise RnnkitError(f"{', '.join(refused)}: file options are not accepted over HTTP "
                              "(send the input as \"text\")")
        check_unknown_keys({"__source__": "request", **values}, self.app.PredictOptions)
        return build_config(self.app.PredictOptions, {"__source__": "request", **values})

    def run(self, options: Any, text: str) -> Iterable[str]:
        return self.app.predict_text(self.loaded, options, text)


def _options_of(cls: type) -> list[dict[str, Any]]:
    shown = []
    for _, f in leaf_fields(cls):
        if PATH_OPTION.search(f.name):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        item = {"name": f.name, "default": default, "help": f.metadata.get("help", "")}
        if f.metadata.get("choices"):
            item["choices"] = list(f.metadata["choices"])
        shown.append(item)
    return shown


def load_models(config: ServeConfig) -> dict[str, Served]:
    """Each checkpoint loaded by its application, named ``--name`` or after its run."""
    from rnnkit.deploy.export import open_application

    models: dict[str, Served] = {}
    for index, path in enumerate(config.checkpoints):
        name = (config.names[index] if index < len(config.names)
                else runner.run_dir_of(Path(path).resolve()).name)
        if not NAME.match(name):
            raise RnnkitError(f"--name {name!r}: use letters, digits, '_', '.', '-' (it is "
                              "part of the URL)")
        if name in models:
            raise RnnkitError(f"--checkpoint {path}: a model named {name!r} is served "
                              "already; give --name")
        app, loaded, _ = open_application(path, config.device)
        models[name] = Served(name, app, loaded, str(path))
    return models


class _Error(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _Queue:
    """At most ``workers`` jobs at once, ``queue_size`` more admitted; the rest refused."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.capacity = workers + queue_size
        self.admitted = 0  # running or waiting (a timed-out job counts until it ends)
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(workers)
        self.served = self.refused = self.timed_out = 0

    def admit(self) -> None:
        with self.lock:
            if self.admitted >= self.capacity:
                self.refused += 1
                raise _Error(503, f"busy: {self.admitted} requests running or queued; retry "
                                  "later", {"Retry-After": "1"})
            self.admitted += 1

    def release(self) -> None:
        with self.lock:
            self.admitted -= 1
            self.served += 1

    def state(self) -> dict[str, int]:
        return {"admitted": self.admitted, "capacity": self.capacity, "served": self.served,
                "refused": self.refused, "timed_out": self.timed_out}


def create_app(models: dict[str, Served], config: ServeConfig):
    """The Starlette application serving ``models``."""
    require("starlette", "serve")
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Route

    queue = _Queue(config.workers, config.queue_size)

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def body_of(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body):
            raise _Error(413, f"body larger than {config.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body:
                raise _Error(413, f"body larger than {config.max_body} bytes")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Error(400, f"malformed JSON: {err}") from None
        if not isinstance(body, dict):
            raise _Error(400, "the body must be a JSON object")
        return body

    def job(served: Served, options: Any, text: str, sink=None) -> str:
        """Runs in a worker thread: wait for a slot, predict, give the slot back."""
        with queue.slots:
            pieces = served.run(options, text)
            if sink is None:
                return "".join(pieces)
            for piece in pieces:
                sink(piece)
            return ""

    async def predict(request: Request):
        try:
            served = models.get(request.path_params["name"])
            if served is None:
                raise _Error(404, f"unknown model {request.path_params['name']!r}; served: "
                                  f"{', '.join(models)}")
            body = await body_of(request)
            text, stream = body.pop("text", ""), body.pop("stream", False)
            if not isinstance(text, str) or not isinstance(stream, bool):
                raise _Error(422, "text: expected a string; stream: expected true or false")
            try:
                options = served.options(body)
            except RnnkitError as err:
                raise _Error(422, str(err)) from None
            queue.admit()
            if stream:
                return StreamingResponse(streamed(served, options, text),
                                         media_type="text/plain; charset=utf-8")
            return JSONResponse({"model": served.name, "output": await run(served, options,
                                                                            text)})
        except _Error as err:
            return error(err.status, err.message, err.headers)
        except ClientDisconnect:
            return error(400, "client disconnected")

    async def run(served: Served, options: Any, text: str) -> str:
        def work() -> str:
            try:
                return job(served, options, text)
            finally:
                queue.release()

        try:
            with anyio.fail_after(config.timeout):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True,
                                                      limiter=limiter)
        except TimeoutError:
            queue.timed_out += 1
            raise _Error(504, f"timed out after {config.timeout:g} s") from None
        except RnnkitError as err:
            raise _Error(422, str(err)) from None
        except Exception as err:  # noqa: BLE001 - a bug in a prediction is a 500, not a crash
            raise _Error(500, f"prediction failed: {type(err).__name__}: {err}") from None

    async def streamed(served: Served, options: Any, text: str):
        send, receive = anyio.create_memory_object_stream[str | None](max_buffer_size=1024)
        failure: list[str] = []

        def work() -> None:
            def sink(piece: str) -> None:
                anyio.from_thread.run(send.send, piece)

            try:
                job(served, options, text, sink)
            except RnnkitError as err:
                failure.append(f"\nerror: {err}\n")
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the client went away
            except Exception as err:  # noqa: BLE001 - reported to the client, not raised
                failure.append(f"\nerror: {type(err).__name__}\n")
            finally:
                queue.release()
                try:
                    anyio.from_thread.run(send.send, None)
                except (RuntimeError, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_in_thread, work)
                with anyio.move_on_after(config.timeout) as scope:
                    async for piece in receive:
                        if piece is None:
                            break
                        yield piece
                if scope.cancelled_caught:
                    queue.timed_out += 1
                    yield f"\nerror: timed out after {config.timeout:g} s\n"
                for message in failure:
                    yield message
                group.cancel_scope.cancel()  # a timed-out prediction ends in the background
        finally:
            send.close()
            receive.close()

    async def _in_thread(work) -> None:
        await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)

    async def health(_: Request):
        return JSONResponse({"status": "ok", "models": list(models), **queue.state()})

    async def list_models(_: Request):
        return JSONResponse({"models": [m.describe() for m in models.values()]})

    async def page(_: Request):
        return HTMLResponse(PAGE)

    # enough threads for every admitted request (waiting ones block on the slots)
    limiter = anyio.CapacityLimiter(queue.capacity + 1)
    routes = [Route("/", page), Route("/health", health), Route("/v1/models", list_models),
              Route("/v1/{name}/predict", predict, methods=["POST"])]
    application = Starlette(routes=routes)
    application.state.queue = queue
    return application


def serve(config: ServeConfig, log=print) -> None:
    """Load the models and serve them until SIGTERM or Ctrl-C."""
    uvicorn = require("uvicorn", "serve")
    import torch

    torch.set_num_threads(config.threads)
    models = load_models(config)
    application = create_app(models, config)
    for served in models.values():
        log(f"{served.name}: {served.app.name} from {served.checkpoint} → POST "
            f"http://{config.host}:{config.port}/v1/{served.name}/predict")
    log(f"page: http://{config.host}:{config.port}/   (Ctrl-C or SIGTERM stops)")
    server = uvicorn.Server(uvicorn.Config(
        application, host=config.host, port=config.port, log_level="warning",
        timeout_graceful_shutdown=int(config.timeout) + 1, limit_concurrency=None))
    server.run()
