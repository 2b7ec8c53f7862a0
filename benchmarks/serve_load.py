"""Load test of ``rnnkit serve`` on loopback, and ONNX Runtime vs rnnkit latency at batch 1.

What it does (everything on 127.0.0.1, nothing else reached):

1. Trains two checkpoints of the default model sizes for 2 steps on synthetic data (the load
   test measures serving, not accuracy): a classifier (word bi-LSTM, 128 units) and a character
   LSTM language model (2 × 512 units).
2. Starts ``rnnkit serve`` with both (one worker, ``--queue-size`` above the client count)
   without batching (``--max-batch 1``) and sends ``--requests`` requests per model from
   ``--clients`` concurrent clients: throughput, p50/p99 latency, failures (expected: 0).
3. Restarts it with batching (``--max-batch``) and sends the classifier's requests again (the
   language model's generation is never batched: its row would repeat phase 2's setup).
4. Restarts it with a queue smaller than the client count (batching on) and sends again: every
   answer must be 200 or 503 with ``Retry-After``, and some must be 503.
5. Exports both to ONNX and times one batch-1 call (classifier: a 20-word text; LM: one step) of
   the rnnkit model, the TorchScript export and ONNX Runtime, one thread each.

    python benchmarks/serve_load.py --requests 10000 --clients 32 --lm-tokens 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rnnkit.cli.main import main as rnnkit_main

TRAIN = ["--max-steps", "2", "--eval-every", "2", "--no-progress", "--no-plot", "--threads",
         "1", "--max-epochs", "none"]
WORDS = "the a film movie is was good great fun bad dull poor plot actors story".split()


def train(root: Path) -> dict[str, Path]:
    rng = random.Random(0)
    lines = [f"{rng.choice(['pos', 'neg'])} {' '.join(rng.choices(WORDS, k=12))}\n"
             for _ in range(400)]
    (root / "c.txt").write_text("".join(lines))
    (root / "p.txt").write_text("".join(lines) * 3)
    runs = {"classify": root / "classify", "lm": root / "lm"}
    assert rnnkit_main(["classify", "train", "--train", str(root / "c.txt"), "--out",
                        str(runs["classify"]), *TRAIN]) == 0
    assert rnnkit_main(["lm", "train", "--train", str(root / "p.txt"), "--out",
                        str(runs["lm"]), "--bptt", "32", "--batch-size", "4", *TRAIN]) == 0
    return runs


SERVER_LOG = Path(tempfile.gettempdir()) / "rnnkit-serve-load-server.log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(runs: dict[str, Path], queue_size: int, max_batch: int):
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "rnnkit", "serve", "--port", str(port), "--queue-size",
               str(queue_size), "--workers", "1", "--threads", "1", "--timeout", "120",
               "--max-batch", str(max_batch)]
    for path in runs.values():
        command += ["--checkpoint", str(path)]
    log = open(SERVER_LOG, "a")  # noqa: SIM115 - the server's own messages, for a post-mortem
    log.write(f"--- {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


BODIES = {"classify": {"text": " ".join(WORDS[:12])},
          "lm": {"text": "the film ", "max_tokens": 20, "seed": 1}}


async def load(base: str, model: str, requests: int, clients: int) -> dict:
    import httpx

    latencies, statuses, retry_after = [], {}, 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        async def worker():
            nonlocal retry_after
            for _ in counter:
                start = time.perf_counter()
                try:
                    response = await client.post(f"{base}/v1/{model}/predict",
                                                 json=BODIES[model])
                except httpx.TransportError as err:  # counted as a failure, not a crash
                    key = f"transport error ({type(err).__name__})"
                    statuses[key] = statuses.get(key, 0) + 1
                    continue
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                retry_after += response.status_code == 503 and "retry-after" in response.headers

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        health = (await client.get(f"{base}/health")).json()
    ok = sorted(t for t in latencies)
    batching = health.get("batching", {}).get(model, {"batches": 0, "requests": 0})
    return {"requests": requests, "seconds": elapsed, "rps": requests / elapsed,
            "p50_ms": 1000 * statistics.median(ok),
            "p99_ms": 1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))],
            "statuses": statuses, "retry_after": retry_after, "batching": batching}


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def latency(fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` (after 20 warm-up calls)."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def export_latency(runs: dict[str, Path], root: Path, repeats: int) -> list[tuple]:
    from rnnkit.deploy import export as ex

    rows = []
    for name, run in runs.items():
        result = ex.export(run, "onnx", root / f"{name}.onnx", log=lambda _: None)
        ex.export(run, "torchscript", root / f"{name}.pt", log=lambda _: None)
        rows.append(one_row(name, run, result, root / f"{name}.pt", repeats))
    return rows


def one_row(name: str, run: Path, result, scripted_path: Path, repeats: int) -> tuple:
    """(model, graph, rnnkit ms, TorchScript ms, ONNX Runtime ms, parity) at batch 1."""
    import onnxruntime as ort

    from rnnkit.deploy import export as ex
    from rnnkit.models.exportable import padded_example

    _, loaded, _ = ex.open_application(run)
    manifest = json.loads(result.manifest.read_text())["graphs"][0]
    if name == "classify":
        model, vocab, _ = loaded.members[0]
        inputs = padded_example(len(vocab), vocab.pad_id, [20])  # one 20-word text

        def reference():
            return model(*inputs)
    else:
        model, cfg = loaded.model, loaded.model.config
        inputs = (torch.tensor([[3]]), torch.zeros(cfg.num_layers, 1, cfg.hidden_size),
                  torch.zeros(cfg.num_layers, 1, cfg.hidden_size))  # one step

        def reference():
            return model(inputs[0], inputs[1:])
    scripted = torch.jit.load(str(scripted_path))
    session = ex.onnx_session(ort, result.files[0])
    feed = {n: t.numpy() for n, t in zip(manifest["inputs"], inputs, strict=True)}
    with torch.no_grad():
        return (name, manifest["name"], latency(reference, repeats),
                latency(lambda: scripted(*inputs), repeats),
                latency(lambda: session.run(None, feed), repeats),
                max(manifest["parity"].values()))


def ab_rounds(runs: dict[str, Path], args) -> None:
    """Batching off and on, side by side: two servers up at once, loaded in turn (off, on,
    off, on, …), so that both see the same changes of the machine's load."""
    servers = {max_batch: start_server({"classify": runs["classify"]}, args.queue_size,
                                       max_batch) for max_batch in (1, args.max_batch)}
    totals: dict[int, list] = {1: [], args.max_batch: []}
    print("| round | batching | requests | req/s | p50 ms | p99 ms | 200 | other | requests "
          "per batch |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    try:
        for number in range(args.ab_rounds):
            for max_batch, (_, base) in servers.items():
                r = asyncio.run(load(base, "classify", args.ab_requests, args.clients))
                totals[max_batch].append(r)
                merged = r["batching"]
                other = sum(v for k, v in r["statuses"].items() if k != 200)
                print(f"| {number + 1} | {'off' if max_batch == 1 else 'on'} | "
                      f"{r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                      f"{r['p99_ms']:.1f} | {r['statuses'].get(200, 0)} | {other} | "
                      f"{merged['requests'] / max(merged['batches'], 1):.1f} (cumulative) |",
                      flush=True)
    finally:
        for process, _ in servers.values():
            stop(process)
    rates = {k: sum(r["requests"] for r in v) / sum(r["seconds"] for r in v)
             for k, v in totals.items()}
    print(f"A/B: {args.ab_rounds} rounds of {args.ab_requests} requests, {args.clients} "
          f"clients: batching off {rates[1]:.1f} req/s, on {rates[args.max_batch]:.1f} req/s, "
          f"ratio on/off {rates[args.max_batch] / rates[1]:.2f}; uptime: "
          f"{os.popen('uptime').read().strip()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000,
                        help="classifier requests per phase")
    parser.add_argument("--lm-requests", type=int, default=0,
                        help="language model requests per phase (default: --requests)")
    parser.add_argument("--lm-tokens", type=int, default=20,
                        help="tokens generated per language model request")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--queue-size", type=int, default=64,
                        help="phases 2 and 3 (below the bound)")
    parser.add_argument("--small-queue", type=int, default=4, help="phase 4 (above the bound)")
    parser.add_argument("--max-batch", type=int, default=32, help="phases 3 and 4")
    parser.add_argument("--repeats", type=int, default=500, help="latency samples")
    parser.add_argument("--ab-rounds", type=int, default=0,
                        help="also: two classifier servers, batching off and on, loaded in "
                             "turn for this many rounds each (a side-by-side ratio)")
    parser.add_argument("--ab-requests", type=int, default=1000, help="requests per A/B round")
    parser.add_argument("--only-ab", action="store_true",
                        help="run the A/B rounds only (no phases, no export latency)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    BODIES["lm"]["max_tokens"] = args.lm_tokens
    print(f"uptime: {os.popen('uptime').read().strip()}")
    with tempfile.TemporaryDirectory(prefix="rnnkit-serve-load-") as tmp:
        root = Path(tmp)
        runs = train(root)
        rows = []
        if args.ab_rounds:
            ab_rounds(runs, args)
        if args.only_ab:
            return
        phases = ((args.queue_size, "below the bound", 1, ("classify", "lm")),
                  (args.queue_size, "below the bound", args.max_batch, ("classify",)),
                  (args.small_queue, "above the bound", args.max_batch, ("classify", "lm")))
        for queue_size, label, max_batch, names in phases:
            process, base = start_server(runs, queue_size, max_batch)
            try:
                for model in names:
                    count = args.requests if model == "classify" else (args.lm_requests
                                                                        or args.requests)
                    started = time.strftime("%H:%M:%S", time.gmtime())
                    result = asyncio.run(load(base, model, count, args.clients))
                    print(f"{started}–{time.strftime('%H:%M:%S', time.gmtime())} UTC {model} "
                          f"queue {queue_size} max-batch {max_batch}: {result}", flush=True)
                    rows.append((model, label, queue_size, max_batch, result))
            finally:
                stop(process)
        latencies = export_latency(runs, root, args.repeats)
    print(f"\nload: {args.clients} concurrent clients, 1 worker, loopback; LM: "
          f"{args.lm_tokens} tokens a request; uptime after: {os.popen('uptime').read().strip()}")
    print("| model | batching | queue | requests | req/s | p50 ms | p99 ms | 200 | 503 (with "
          "Retry-After) | other | requests per batch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, label, queue_size, max_batch, r in rows:
        s = r["statuses"]
        other = sum(v for k, v in s.items() if k not in (200, 503))
        merged = r["batching"]
        mean = (f"{merged['requests'] / merged['batches']:.1f} ({merged['batches']} batches)"
                if merged["batches"] else "—")
        batching = ("off" if max_batch == 1 else f"on (≤ {max_batch})") if model == "classify" \
            else "n/a (generation)"
        print(f"| {model} | {batching} | {queue_size} ({label}) | {r['requests']} | "
              f"{r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {s.get(200, 0)} | "
              f"{s.get(503, 0)} ({r['retry_after']}) | {other} | {mean} |")
    print("\nbatch 1, one thread, median of", args.repeats, "calls")
    print("| model | graph | rnnkit ms | TorchScript ms | ONNX Runtime ms | parity (max abs) |")
    print("|---|---|---|---|---|---|")
    for name, graph, ours, scripted, onnx, parity in latencies:
        print(f"| {name} | {graph} | {ours:.3f} | {scripted:.3f} | {onnx:.3f} | "
              f"{parity:.1e} |")


if __name__ == "__main__":
    main()
