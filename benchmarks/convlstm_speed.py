"""ConvLSTM / ConvGRU forward + backward: rnnkit's hand-written BPTT vs an autograd loop.

The baseline is the same cell written the usual way: one ``torch.nn.Conv2d`` over
``[x_t, h_{t-1}]`` per step, the gate nonlinearities, autograd over the Python loop (the cell of
most ConvLSTM repositories). Both get the same weights and inputs; first their outputs and
gradients are compared, then each is timed (forward + backward of ``output.sum()``), the two
alternating repeat by repeat so that load on a shared machine hits both alike; the table shows
the medians and their ratio, of wall time and of this process's CPU time (``time.process_time``:
on a machine shared with other jobs, the wall time of a call also holds the time other
processes ran; with one thread the CPU time is the work the call itself did). The last columns
count the minor page faults of a call (``getrusage``'s ``ru_minflt``, median): each is a fresh
4 KB page the kernel zeroed for a large block that ``malloc`` took from the system.

    python benchmarks/convlstm_speed.py --threads 2
    python benchmarks/convlstm_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch
from torch import nn

import rnnkit

# (cell, T, B, C, H, frame, kernel): the Moving-MNIST-like setting of rnnkit frames and two more
SHAPES = [
    ("lstm", 10, 16, 1, 32, 16, 3),
    ("lstm", 10, 8, 16, 64, 16, 3),
    ("lstm", 10, 8, 1, 32, 32, 5),
    ("gru", 10, 16, 1, 32, 16, 3),
    ("gru", 10, 8, 16, 64, 16, 3),
]


class AutogradCell(nn.Module):
    """The textbook cell on ``nn.Conv2d`` (one convolution over [x_t, h_{t-1}] per step)."""

    def __init__(self, cell: str, layer) -> None:
        super().__init__()
        self.cell = cell
        weight = layer.weight_l0
        self.channels = layer.input_channels
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:],
                              padding=layer.padding)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(layer.bias_l0)
        self.conv.to(weight.device, weight.dtype)

    def forward(self, x):
        steps, batch, _, height, width = x.shape
        size = self.conv.out_channels // (4 if self.cell == "lstm" else 3)
        h = x.new_zeros(batch, size, height, width)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(steps):
            if self.cell == "lstm":
                i, f, g, o = self.conv(torch.cat([x[t], h], 1)).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:  # torch's GRU form, as rnnkit.ConvGRU
                w, b = self.conv.weight, self.conv.bias
                a_r, a_z, a_n = nn.functional.conv2d(x[t], w[:, : self.channels], b,
                                                     padding=self.conv.padding).chunk(3, 1)
                u_r, u_z, u_n = nn.functional.conv2d(h, w[:, self.channels:],
                                                     padding=self.conv.padding).chunk(3, 1)
                r, z = torch.sigmoid(a_r + u_r), torch.sigmoid(a_z + u_z)
                n = torch.tanh(a_n + r * u_n)
                h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _once(model, x, device) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds of this process, of which user-mode seconds, minor page
    faults) of one forward + backward. The rest of the CPU time is the kernel's, mostly page
    faults of fresh memory."""
    for p in model.parameters():
        p.grad = None
    x.grad = None
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    out.sum().backward()
    _sync(device)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (time.perf_counter() - start, time.process_time() - cpu,
            after.ru_utime - usage.ru_utime, after.ru_minflt - usage.ru_minflt)


def measure(shape, repeats: int, device: torch.device) -> dict:
    cell, steps, batch, channels, hidden, frame, kernel = shape
    torch.manual_seed(0)
    layer_cls = rnnkit.ConvLSTM if cell == "lstm" else rnnkit.ConvGRU
    ours = layer_cls(channels, hidden, kernel).to(device)
    theirs = AutogradCell(cell, ours)
    x = torch.randn(steps, batch, channels, frame, frame, device=device, requires_grad=True)
    # the same numbers first
    _once(ours, x, device)
    dx_ours, dw_ours = x.grad.clone(), ours.weight_l0.grad.clone()
    _once(theirs, x, device)
    with torch.no_grad():
        same_out = float((ours(x)[0] - theirs(x)).abs().max())
    diff = max(same_out, float((x.grad - dx_ours).abs().max()),
               float((theirs.conv.weight.grad - dw_ours).abs().max() / dw_ours.abs().max()))
    for _ in range(2):  # warm-up
        _once(ours, x, device), _once(theirs, x, device)
    times = {"rnnkit": [], "autograd": []}
    for _ in range(repeats):
        times["rnnkit"].append(_once(ours, x, device))
        times["autograd"].append(_once(theirs, x, device))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    user = {k: statistics.median(t[2] for t in v) for k, v in times.items()}
    faults = {k: statistics.median(t[3] for t in v) for k, v in times.items()}
    return {"rnnkit_faults": faults["rnnkit"], "autograd_faults": faults["autograd"],
            "rnnkit_user_ms": 1e3 * user["rnnkit"], "autograd_user_ms": 1e3 * user["autograd"],
            "user_ratio": user["rnnkit"] / user["autograd"],
            "shape": shape, "rnnkit_ms": 1e3 * wall["rnnkit"],
            "autograd_ms": 1e3 * wall["autograd"], "ratio": wall["rnnkit"] / wall["autograd"],
            "rnnkit_cpu_ms": 1e3 * cpu["rnnkit"], "autograd_cpu_ms": 1e3 * cpu["autograd"],
            "cpu_ratio": cpu["rnnkit"] / cpu["autograd"], "max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch {torch.__version__}, {args.threads} threads, median of "
          f"{args.repeats}, load average {load:.2f} at start")
    print()
    print("| cell | T | B | C | H | frame | k | rnnkit wall ms | autograd wall ms | wall ratio | "
          "rnnkit CPU ms | autograd CPU ms | CPU ratio | user-mode ratio | max diff | "
          "rnnkit faults | autograd faults |")
    print("| --- " * 17 + "|")
    for shape in SHAPES:
        row = measure(shape, args.repeats, device)
        cell, steps, batch, channels, hidden, frame, kernel = shape
        print(f"| {cell} | {steps} | {batch} | {channels} | {hidden} | {frame}×{frame} | "
              f"{kernel} | {row['rnnkit_ms']:.1f} | {row['autograd_ms']:.1f} | "
              f"{row['ratio']:.2f}× | {row['rnnkit_cpu_ms']:.1f} | {row['autograd_cpu_ms']:.1f} | "
              f"{row['cpu_ratio']:.2f}× | {row['user_ratio']:.2f}× | {row['max_diff']:.1e} | "
              f"{row['rnnkit_faults']:.0f} | {row['autograd_faults']:.0f} |", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.2f} at the end")


if __name__ == "__main__":
    main()
