"""``rnnkit serve``: thin front end of :mod:`rnnkit.deploy.server`."""

from __future__ import annotations

import argparse

from rnnkit.cli.builder import add_tool, add_tool_flag

EXAMPLES = """examples:
  rnnkit serve --checkpoint runs/sst2 --checkpoint runs/shakespeare --port 8000
  curl -s localhost:8000/v1/sst2/predict -d '{"text": "a gripping , funny film"}'
  curl -sN localhost:8000/v1/shakespeare/predict \\
      -d '{"text": "ROMEO:", "max_tokens": 100, "stream": true}'
  curl -s localhost:8000/v1/models          # each model's routes and options
  curl -s localhost:8000/v1/digits/predict -d '{"uploads": {"audio": "'$(base64 -w0 a.wav)'"}}'
  curl -s localhost:8000/v1/jsb/generate -d '{"steps": 32}'   # the MIDI file comes back base64
  open http://127.0.0.1:8000/               # a page to try each model

The JSON body holds "text" (the input; a language model's prompt), "stream" (true: plain
text as it is made), "uploads" ({option: base64} where the route takes a file) and the
route's options (the flags of rnnkit APP predict or rnnkit APP VERB, with underscores).
Concurrent classify/tag requests run as one padded batch (--max-batch). Needs: pip install
'rnnkit[serve]'.
"""


def register(subparsers) -> None:
    parser = add_tool(
        subparsers, "serve", "serve trained models over HTTP (JSON API and a page to try them)",
        "Serve one or more checkpoints: POST /v1/NAME/predict, GET /v1/models, "
        "GET /health, and a page at /. A bounded queue (503 with Retry-After when "
        "full), request timeouts (504), a body size limit (413); stops on SIGTERM "
        "after the requests in flight.",
        EXAMPLES, several=True)
    parser.add_argument("--name", action="append", default=[], metavar="NAME",
                        help="the URL name of the n-th --checkpoint (default: its run "
                             "directory's name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only)")
    add_tool_flag(parser, "--port", 8000, "port")
    add_tool_flag(parser, "--device", "cpu", "cpu, cuda or cuda:N")
    add_tool_flag(parser, "--workers", 1, "predictions running at once")
    add_tool_flag(parser, "--queue-size", 16, "requests waiting beyond those; more get 503")
    add_tool_flag(parser, "--timeout", 30.0, "seconds a request may wait and run before 504")
    add_tool_flag(parser, "--max-body", 1_000_000, "largest request body in bytes; larger get 413")
    add_tool_flag(parser, "--threads", 1, "torch threads per prediction")
    add_tool_flag(parser, "--max-batch", 32, "concurrent requests to one model run as one padded "
                  "batch, where the application allows it (classify, tag); 1: no batching")
    add_tool_flag(parser, "--batch-wait", 2.0, "milliseconds a batch waits for more requests "
                  "when the model is idle", metavar="MS")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.deploy.server import ServeConfig, serve

    serve(ServeConfig(args.checkpoint, args.name, args.host, args.port, args.device,
                      args.workers, args.queue_size, args.timeout, args.max_body, args.threads,
                      args.max_batch, args.batch_wait))
    return 0
