"""``rnnkit serve``: trained models behind a JSON HTTP API (Starlette + uvicorn) and a page.

One model per checkpoint, named after its run directory (or ``--name``). Routes:

- ``POST /v1/{name}/predict``: body ``{"text": "...", "stream": false, OPTION: value, …}``,
  the options being the fields of the application's ``PredictOptions`` (the flags of
  ``rnnkit APP predict``, with underscores), validated as the command line validates them.
  The text goes where ``predict`` would read its input
  (:meth:`~rnnkit.apps.base.Application.predict_text`). Answer ``{"model", "output"}``; with
  ``"stream": true`` the output is streamed as plain text, piece by piece as the application
  yields it (generation: token by token).
- ``POST /v1/{name}/{verb}``: the application's own commands that work on a checkpoint and
  print (``generate``, ``transcribe``, …), the same body without ``text``.
- Files: ``"uploads": {option: base64}`` for the options an application declares as uploads
  (``serve_uploads``), written to a temporary file the option names; the files a route makes
  (``serve_downloads``) come back as ``"files": [{"name", "type", "data"}]`` (base64).
- Batching: requests to one model with the same options run as one ``predict`` call where the
  application allows it (:mod:`rnnkit.deploy.batching`).
- ``GET /v1/models``: each model's application, summary, options (defaults, help, choices) and
  routes.
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

import base64
import binascii
import contextlib
import dataclasses
import json
import mimetypes
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit.apps import runner
from rnnkit.apps.base import Application
from rnnkit.deploy import require
from rnnkit.deploy.batching import Batcher, unit_of
from rnnkit.deploy.page import PAGE
from rnnkit.errors import RnnkitError
from rnnkit.train.config import build_config, check_unknown_keys, leaf_fields

__all__ = ["ServeConfig", "Served", "load_models", "create_app", "serve", "PAGE"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# option names that hold file paths: never taken from a request
PATH_OPTION = re.compile(r"^(input|output|data|src|ref|files|audio|image|images|midi|plot|"
                         r"checkpoint|vectors)$|_(out|png|file|path|dir)$")
RESERVED = ("text", "stream", "uploads")
KEEP_ALIVE = 75  # seconds an idle keep-alive connection stays open (nginx's default)


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
    max_batch: int = 32  # requests run as one batch (1: no batching)
    batch_wait: float = 2.0  # milliseconds a batch waits for more requests

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise RnnkitError("--checkpoint: required (one per model to serve)")
        if len(self.names) > len(self.checkpoints):
            raise RnnkitError(f"--name: given {len(self.names)} times for "
                              f"{len(self.checkpoints)} --checkpoint")
        for flag, value in (("--workers", self.workers), ("--threads", self.threads),
                            ("--max-body", self.max_body), ("--max-batch", self.max_batch)):
            if value < 1:
                raise RnnkitError(f"{flag}: expected an integer >= 1, got {value}")
        if self.queue_size < 0:
            raise RnnkitError(f"--queue-size: expected an integer >= 0, got {self.queue_size}")
        if not 0 <= self.batch_wait <= 1000:
            raise RnnkitError(f"--batch-wait: expected 0..1000 ms, got {self.batch_wait}")
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

    def routes(self) -> dict[str, Route]:
        """``predict`` and the application's verbs that work on a checkpoint and print."""
        found = {"predict": Route("predict", self.app.PredictOptions, None, *self._files(
            "predict"))}
        for verb in self.app.verbs():
            if verb.checkpoint and verb.output and verb.name not in found:
                found[verb.name] = Route(verb.name, verb.Options, verb, *self._files(verb.name))
        return found

    def _files(self, verb: str) -> tuple[dict[str, str], dict[str, str]]:
        uploads = getattr(self.app, "serve_uploads", {}).get(verb, {})
        downloads = getattr(self.app, "serve_downloads", {}).get(verb, {})
        return dict(uploads), dict(downloads)

    def describe(self) -> dict[str, Any]:
        routes = {name: {"options": _options_of(r.Options, r), "uploads": r.uploads,
                         "downloads": r.downloads, "text": self._reads_text(r),
                         "help": r.verb.help if r.verb is not None else "predict"}
                  for name, r in self.routes().items()}
        return {"name": self.name, "application": self.app.name, "summary": self.app.summary,
                "checkpoint": self.checkpoint, "options": routes["predict"]["options"],
                "routes": routes}

    def _reads_text(self, route: Route) -> bool:
        """Whether the route reads the request's ``text`` (predict reading ``--input`` or
        overriding ``predict_text``; verbs never do)."""
        if route.verb is not None:
            return False
        fields = {f.name for f in dataclasses.fields(route.Options)}
        return "input" in fields or type(self.app).predict_text is not Application.predict_text

    def options(self, values: dict[str, Any], verb: str = "predict") -> Any:
        """The options of ``verb`` (``PredictOptions`` for ``predict``) from a request body
        (RnnkitError: 422)."""
        route = self.routes()[verb]
        refused = sorted(k for k in values if PATH_OPTION.search(k) or k in route.uploads
                         or k in route.downloads)
        if refused:
            raise RnnkitError(f"{', '.join(refused)}: file options are not accepted over HTTP "
                              "(send the input as \"text\"" + (
                                  f", files as \"uploads\": {sorted(route.uploads)}"
                                  if route.uploads else "") + ")")
        check_unknown_keys({"__source__": "request", **values}, route.Options)
        return build_config(route.Options, {"__source__": "request", **values})

    def run(self, options: Any, text: str, verb: str = "predict") -> Iterable[str]:
        if verb == "predict":
            return self.app.predict_text(self.loaded, options, text)
        if text:
            raise RnnkitError(f"text: {self.app.name} {verb} reads no input text; give its "
                              "options only")
        return self.routes()[verb].verb.run(self.loaded, options) or ()


@dataclass
class Route:
    """One route of a model: ``predict`` or a verb; ``uploads`` ``{option: suffix}`` (files a
    request sends, base64, written to a temporary file the option names) and ``downloads``
    ``{option: file name}`` (the option names a temporary file; what the run writes there
    comes back base64), as the application declares them (``serve_uploads``,
    ``serve_downloads``: ``{verb: {option: …}}``)."""

    name: str
    Options: type
    verb: Any
    uploads: dict[str, str]
    downloads: dict[str, str]


def _options_of(cls: type, route: Route | None = None) -> list[dict[str, Any]]:
    shown = []
    for _, f in leaf_fields(cls):
        if PATH_OPTION.search(f.name) or (route is not None and (
                f.name in route.uploads or f.name in route.downloads)):
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


@dataclass
class _Call:
    """One request: the model, its route, options, text and uploaded files' bytes."""

    served: Served
    route: Route
    options: Any
    text: str
    uploads: dict[str, bytes]

    def uploaded_names(self) -> set[str]:
        return {f"{option}{suffix}" for option, suffix in self.route.uploads.items()}


def _decoded(uploads: Any, route: Route) -> dict[str, bytes]:
    """``"uploads": {option: base64}`` of a request body, checked against the route's."""
    if not isinstance(uploads, dict):
        raise _Error(422, "uploads: expected an object {option: base64 data}")
    unknown = sorted(set(uploads) - set(route.uploads))
    if unknown:
        raise _Error(422, f"uploads: {', '.join(unknown)} not accepted by {route.name} "
                          f"(accepted: {', '.join(sorted(route.uploads)) or 'none'})")
    decoded = {}
    for option, data in uploads.items():
        if not isinstance(data, str):
            raise _Error(422, f"uploads.{option}: expected base64 text")
        try:
            decoded[option] = base64.b64decode(data.split(",", 1)[-1] if data.startswith(
                "data:") else data, validate=True)
        except binascii.Error:
            raise _Error(400, f"uploads.{option}: not valid base64") from None
    return decoded


def _media_type(name: str) -> str:
    if name.lower().endswith((".mid", ".midi")):
        return "audio/midi"  # mimetypes says audio/mid or nothing, by platform
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@contextlib.contextmanager
def _files_of(call: _Call):
    """(options, directory): the options with the uploaded files and the files to make in a
    fresh temporary directory (None when the call has neither), removed afterwards."""
    if not call.uploads and not call.route.downloads:
        yield call.options, None
        return
    directory = tempfile.mkdtemp(prefix="rnnkit-serve-")
    try:
        paths = {}
        for option, data in call.uploads.items():
            path = Path(directory) / f"{option}{call.route.uploads[option]}"
            path.write_bytes(data)
            paths[option] = str(path)
        for option, name in call.route.downloads.items():
            paths[option] = str(Path(directory) / name)
        try:
            options = dataclasses.replace(call.options, **paths)
        except (TypeError, ValueError) as err:
            raise RnnkitError(str(err)) from None
        yield options, directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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
    from starlette.routing import Route as Endpoint

    queue = _Queue(config.workers, config.queue_size)
    batchers = {}
    if config.max_batch > 1:
        for served in models.values():
            unit = unit_of(served.app)
            if unit:
                batchers[served.name] = Batcher(
                    lambda options, text, _s=served: "".join(_s.run(options, text)), unit,
                    queue.slots, config.batch_wait / 1000, config.max_batch)

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

    def job(call: _Call, sink=None) -> tuple[str, list[dict[str, str]]]:
        """Runs in a worker thread: wait for a slot, predict, give the slot back (or join a
        batch of the same model's requests, which takes one slot). Files sent and made live
        in a temporary directory for the call only."""
        served, options, text = call.served, call.options, call.text
        if sink is None and call.route.name == "predict" and not call.uploads and (
                served.name in batchers):
            return batchers[served.name].submit(options, text), []
        with _files_of(call) as (options, directory):
            with queue.slots:
                try:
                    pieces = served.run(options, text, call.route.name)
                    if sink is None:
                        output = "".join(pieces)
                    else:
                        for piece in pieces:
                            sink(piece.replace(f"{directory}{os.sep}", "") if directory
                                 else piece)
                        output = ""
                except RnnkitError as err:  # name the file sent, not the temporary one
                    if directory is None:
                        raise
                    raise RnnkitError(str(err).replace(f"{directory}{os.sep}", "")) from None
            if directory is None:
                return output, []
            made = [{"name": path.name, "type": _media_type(path.name),
                     "data": base64.b64encode(path.read_bytes()).decode("ascii")}
                    for path in sorted(Path(directory).iterdir())
                    if path.is_file() and path.name not in call.uploaded_names()]
            return output.replace(f"{directory}{os.sep}", ""), made

    async def predict(request: Request):
        try:
            served = models.get(request.path_params["name"])
            if served is None:
                raise _Error(404, f"unknown model {request.path_params['name']!r}; served: "
                                  f"{', '.join(models)}")
            route = served.routes().get(request.path_params["verb"])
            if route is None:
                raise _Error(404, f"unknown route {request.path_params['verb']!r} of "
                                  f"{served.name}; routes: {', '.join(served.routes())}")
            body = await body_of(request)
            text, stream = body.pop("text", ""), body.pop("stream", False)
            uploads = body.pop("uploads", {})
            if not isinstance(text, str) or not isinstance(stream, bool):
                raise _Error(422, "text: expected a string; stream: expected true or false")
            call = _Call(served, route, None, text, _decoded(uploads, route))
            if stream and route.downloads:
                raise _Error(422, f"stream: {route.name} answers with files; ask without "
                                  "stream")
            try:
                call.options = served.options(body, route.name)
            except RnnkitError as err:
                raise _Error(422, str(err)) from None
            queue.admit()
            if stream:
                return StreamingResponse(streamed(call),
                                         media_type="text/plain; charset=utf-8")
            output, files = await run(call)
            answer = {"model": served.name, "output": output}
            if route.downloads:
                answer["files"] = files
            return JSONResponse(answer)
        except _Error as err:
            return error(err.status, err.message, err.headers)
        except ClientDisconnect:
            return error(400, "client disconnected")

    async def run(call: _Call) -> tuple[str, list[dict[str, str]]]:
        def work() -> tuple[str, list[dict[str, str]]]:
            try:
                return job(call)
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

    async def streamed(call: _Call):
        send, receive = anyio.create_memory_object_stream[str | None](max_buffer_size=1024)
        failure: list[str] = []

        def work() -> None:
            def sink(piece: str) -> None:
                anyio.from_thread.run(send.send, piece)

            try:
                job(call, sink)
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
        batching = {name: {"batches": b.batches, "requests": b.batched}
                    for name, b in batchers.items()}
        return JSONResponse({"status": "ok", "models": list(models), **queue.state(),
                             "batching": batching})

    async def list_models(_: Request):
        return JSONResponse({"models": [m.describe() for m in models.values()]})

    async def page(_: Request):
        return HTMLResponse(PAGE)

    # enough threads for every admitted request (waiting ones block on the slots)
    limiter = anyio.CapacityLimiter(queue.capacity + 1)
    routes = [Endpoint("/", page), Endpoint("/health", health), Endpoint("/v1/models", list_models),
              Endpoint("/v1/{name}/{verb}", predict, methods=["POST"])]
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
        timeout_graceful_shutdown=int(config.timeout) + 1, limit_concurrency=None,
        # a keep-alive connection is closed after this long idle; uvicorn's 5 s let a loaded
        # client's next request meet a connection closing under it (a ReadError)
        timeout_keep_alive=KEEP_ALIVE))
    server.run()
