"""A/B of compiled-loop builds: two (or more) builds of ``rnnkit/native`` behind the same Python
wrappers in one process, alternating call by call with torch.nn, so that a machine whose speed
drifts slows every variant alike. Before timing, each build's output and every gradient are
compared with the first build's: a line ``DIFFERENT`` says they are not bitwise equal.

Build the old variant from another commit first, for example::

    git worktree add /tmp/old HEAD~2
    g++ -O3 -march=native -fopenmp -std=c++17 -shared -fPIC \\
        -o /tmp/old.so /tmp/old/src/rnnkit/native/library.cpp
    python benchmarks/native_ab.py --threads 1 old=/tmp/old.so \\
        new=$(python -c "import rnnkit.native as n; print(n.library()._name)")

Prints one line per cell and shape: median milliseconds of a forward+backward (T = --steps,
input size = H) for each build and torch.nn, each build against torch.nn, and the last build
against the first.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import torch

import rnnkit
import rnnkit.native as native
from rnnkit.native import _ffi

CELLS = {"lstm": (rnnkit.LSTM, torch.nn.LSTM), "gru": (rnnkit.GRU, torch.nn.GRU),
         "rnn": (rnnkit.RNN, torch.nn.RNN)}


def case(libs: dict, cell: str, steps: int, batch: int, hidden: int, rounds: int) -> str:
    ours, theirs = CELLS[cell]
    module, reference = ours(hidden, hidden), theirs(hidden, hidden)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    current = {}
    native.library = lambda: current["lib"]  # what the wrappers call to find the library

    def step(layer):
        out, _ = layer(x)
        out.sum().backward()
        return out

    first, notes = None, []
    for name, lib in libs.items():
        current["lib"] = lib
        x.grad = None
        module.zero_grad()
        out = step(module).detach()
        grads = [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]
        if first is None:
            first = (out, grads)
        elif not (torch.equal(out, first[0])
                  and all(torch.equal(a, b) for a, b in zip(grads, first[1]))):
            notes.append(f"DIFFERENT {name}: largest output difference "
                         f"{(out - first[0]).abs().max().item():.3g}")
    times = {name: [] for name in [*libs, "torch"]}
    for _ in range(rounds):
        for name in times:
            if name != "torch":
                current["lib"] = libs[name]
            layer = reference if name == "torch" else module
            for _ in range(2):
                start = time.perf_counter()
                step(layer)
                times[name].append(1e3 * (time.perf_counter() - start))
    med = {name: statistics.median(values) for name, values in times.items()}
    names = list(libs)
    line = (f"{cell:4s} B {batch:3d} H {hidden:3d}: "
            + "  ".join(f"{name} {med[name]:7.1f}" for name in times)
            + "  | " + "  ".join(f"{name}/torch {med[name] / med['torch']:.2f}" for name in names))
    if len(names) > 1:
        line += f"  | {names[-1]}/{names[0]} {med[names[-1]] / med[names[0]]:.2f}"
    return "\n".join([*notes, line])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("builds", nargs="+", metavar="NAME=LIBRARY.so")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds (2 calls each)")
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--shapes", default="16x256,64x256,16x512,64x512", help="B x H, ...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    libs = {}
    for build in args.builds:
        name, sep, path = build.partition("=")
        if not sep:
            parser.error(f"{build!r}: expected NAME=LIBRARY.so")
        try:
            libs[name] = ctypes.CDLL(path)
            _ffi.declare(libs[name])
        except (OSError, AttributeError) as error:
            parser.error(f"{path}: not a loadable rnnkit native library ({error})")
    shapes = [tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")]
    print(f"{args.threads} thread(s), T = {args.steps}, input size = H, median ms of "
          f"{2 * args.rounds} forward+backward calls each", flush=True)
    for cell in args.cells.split(","):
        for batch, hidden in shapes:
            print(case(libs, cell, args.steps, batch, hidden, args.rounds), flush=True)


if __name__ == "__main__":
    main()
