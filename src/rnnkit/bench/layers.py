"""Layer speed: rnnkit vs torch.nn, forward and forward+backward, and mixed-length batches.

``python -m rnnkit.bench layers [--device cpu|cuda] [--repeats N] [--cells lstm,gru]
[--batch 1,16,64] [--hidden 64,256,512] [--steps 100] [--threads N]``

Both implementations run side by side with the same weights and inputs, their repeats
interleaved (ours, theirs, ours, ...) so that load on a shared machine hits both alike; the table
gives medians in milliseconds and the ratio rnnkit / torch (below 1 means rnnkit is faster).

The mixed-length section times a batch whose lengths are spread uniformly over [T/4, T] three
ways: rnnkit with ``lengths=``, rnnkit at equal lengths (the same padded batch without
``lengths=``), and torch.nn on a PackedSequence.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

CELLS = {"rnn": (rnnkit.RNN, torch.nn.RNN), "lstm": (rnnkit.LSTM, torch.nn.LSTM),
         "gru": (rnnkit.GRU, torch.nn.GRU)}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rnnkit.bench layers",
        description="Median forward and forward+backward times, rnnkit vs torch.nn.",
        epilog="example: python -m rnnkit.bench layers --cells lstm --batch 16 --hidden 256",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--batch", type=_ints, default=[1, 16, 64])
    parser.add_argument("--hidden", type=_ints, default=[64, 256, 512])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-grid", action="store_true", help="only the mixed-length part")
    parser.add_argument("--skip-mixed", action="store_true", help="only the grid")
    args = parser.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")
    for name in ("batch", "hidden"):
        if not getattr(args, name) or min(getattr(args, name)) < 1:
            parser.error(f"--{name}: expected integers >= 1, got {getattr(args, name)}")
    if args.threads < 0:
        parser.error(f"--threads: expected an integer >= 0, got {args.threads}")
    unknown = sorted(set(args.cells.split(",")) - set(CELLS))
    if unknown:
        parser.error(f"--cells: unknown {', '.join(unknown)} (choose from {', '.join(CELLS)})")
    return args


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(fns: list, repeats: int, device: str) -> list[float]:
    """Median wall time (ms) of each callable, running them in turn ``repeats`` times, in a
    fresh random order each round (so that none always runs in the wake of the same other)."""
    for fn in fns:  # warm-up
        fn()
    times: list[list[float]] = [[] for _ in fns]
    order = random.Random(0)
    for _ in range(repeats):
        for k in order.sample(range(len(fns)), len(fns)):
            fn = fns[k]
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(1000 * (time.perf_counter() - start))
    return [statistics.median(t) for t in times]


def _forward(layer, x, **kwargs):
    def run():
        with torch.no_grad():
            layer(x, **kwargs)
    return run


def _forward_backward(layer, x, **kwargs):
    def run():
        x.grad = None
        out, _ = layer(x, **kwargs)
        out.sum().backward()
    return run


def _packed_runs(layer, x, lengths):
    def forward():
        with torch.no_grad():
            layer(pack_padded_sequence(x, lengths, enforce_sorted=False))

    def forward_backward():
        x.grad = None
        out, _ = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
        out.data.sum().backward()
    return forward, forward_backward


def make_pair(cell: str, hidden: int, device: str):
    ours_cls, theirs_cls = CELLS[cell]
    theirs = theirs_cls(hidden, hidden).to(device)
    ours = ours_cls(hidden, hidden).to(device)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def grid(args) -> list[tuple]:
    rows = []
    for cell in args.cells.split(","):
        for hidden in args.hidden:
            for batch in args.batch:
                ours, theirs = make_pair(cell, hidden, args.device)
                x = torch.randn(args.steps, batch, hidden, device=args.device, requires_grad=True)
                fwd = interleaved_medians([_forward(ours, x), _forward(theirs, x)],
                                          args.repeats, args.device)
                both = interleaved_medians(
                    [_forward_backward(ours, x), _forward_backward(theirs, x)],
                    args.repeats, args.device)
                rows.append((cell, batch, hidden, *fwd, fwd[0] / fwd[1], *both, both[0] / both[1]))
                print(_grid_line(rows[-1]), flush=True)
    return rows


def _grid_line(row) -> str:
    cell, batch, hidden, f_o, f_t, f_r, b_o, b_t, b_r = row
    return (f"| {cell} | {batch} | {hidden} | {f_o:.2f} | {f_t:.2f} | {f_r:.2f} | "
            f"{b_o:.2f} | {b_t:.2f} | {b_r:.2f} |")


def mixed(args) -> list[tuple]:
    rows = []
    batch = 64
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, args.steps // 4), args.steps + 1, (batch,), generator=generator)
    lengths[0] = args.steps
    for cell in args.cells.split(","):
        for hidden in (256,):
            ours, theirs = make_pair(cell, hidden, args.device)
            x = torch.randn(args.steps, batch, hidden, device=args.device, requires_grad=True)
            lens = lengths.to(args.device)
            packed_f, packed_fb = _packed_runs(theirs, x, lengths)
            fwd = interleaved_medians(
                [_forward(ours, x, lengths=lens), _forward(ours, x), packed_f],
                args.repeats, args.device)
            both = interleaved_medians(
                [_forward_backward(ours, x, lengths=lens), _forward_backward(ours, x), packed_fb],
                args.repeats, args.device)
            rows.append((cell, batch, hidden, fwd, both))
            print(_mixed_line(rows[-1]), flush=True)
    return rows


def _mixed_line(row) -> str:
    cell, batch, hidden, fwd, both = row
    return (f"| {cell} | {batch} | {hidden} | {fwd[0]:.2f} | {fwd[1]:.2f} | "
            f"{fwd[0] / fwd[1]:.2f} | {fwd[2]:.2f} | {both[0]:.2f} | {both[1]:.2f} | "
            f"{both[0] / both[1]:.2f} | {both[2]:.2f} | {both[0] / both[2]:.2f} |")


def describe_machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    # the vector width decides the ratios (docs/benchmarks.md: "without AVX-512")
    capability = torch.backends.cpu.get_cpu_capability()
    mkldnn = "on" if torch.backends.mkldnn.is_available() else "off"
    return (f"{cpu} ({capability}), {torch.get_num_threads()} torch threads, torch "
            f"{torch.__version__}, mkldnn {mkldnn}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {describe_machine(args.device)}; T = {args.steps}, input size = H, "
          f"float32, median of {args.repeats} interleaved runs, times in ms\n")
    if not args.skip_grid:
        print("| cell | B | H | fwd rnnkit | fwd torch | ratio | fwd+bwd rnnkit | "
              "fwd+bwd torch | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        grid(args)
        print()
    if not args.skip_mixed:
        print("Mixed lengths (B = 64, lengths uniform in [T/4, T]): rnnkit `lengths=` vs the same "
              "padded batch at equal lengths, and torch.nn on a PackedSequence")
        print()
        print("| cell | B | H | fwd lengths= | fwd equal | ratio | fwd torch packed | "
              "fwd+bwd lengths= | fwd+bwd equal | ratio | fwd+bwd torch packed | "
              "ratio vs torch |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        mixed(args)
    return 0
