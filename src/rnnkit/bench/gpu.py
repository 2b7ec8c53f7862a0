"""``python -m rnnkit.bench gpu``: the fused Triton kernels against torch.nn (cuDNN).

For every cell (Elman tanh, LSTM, GRU), dtype (float32 with TF32 off, bfloat16), hidden size H
and batch B of the grid, at T = 256: first a parity check of outputs, final states and every
gradient against cuDNN (the caching allocator is filled with NaN first, so an output the kernels
never write shows up), then the median forward and forward+backward times of both. Prints one
table; ``--auto-table`` also prints the ``PREFERRED`` set for ``rnnkit/kernels/_auto.py``.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

import rnnkit

CELLS = {
    "elman": (rnnkit.RNN, torch.nn.RNN),
    "lstm": (rnnkit.LSTM, torch.nn.LSTM),
    "gru": (rnnkit.GRU, torch.nn.GRU),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TOLERANCE = {"float32": 1e-3, "bfloat16": 3e-2}  # relative norm error vs cuDNN
WIN = 1.05  # auto picks the kernels only where both ratios beat cuDNN by this margin


def parse(argv: list[str]) -> argparse.Namespace:
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    names = lambda text: text.split(",")  # noqa: E731
    parser = argparse.ArgumentParser(prog="python -m rnnkit.bench gpu", description=__doc__)
    parser.add_argument("--cells", type=names, default=list(CELLS))
    parser.add_argument("--dtypes", type=names, default=list(DTYPES))
    parser.add_argument("--hidden", type=ints, default=[128, 256, 512, 1024])
    parser.add_argument("--batch", type=ints, default=[1, 8, 64, 256])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--rep-ms", type=int, default=200, help="timing budget per measurement")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 for float32 products")
    parser.add_argument("--json", help="also write every row to this file")
    parser.add_argument("--auto-table", action="store_true", help="print PREFERRED for _auto.py")
    return parser.parse_args(argv)


def _poison_allocator(megabytes: int = 512) -> None:
    """Fill free cached memory with NaN so that unwritten outputs cannot pass as zeros."""
    block = torch.empty(megabytes * 2**18, dtype=torch.float32, device="cuda")
    block.fill_(math.nan)
    del block


def _pair(cell: str, size: int, dtype: torch.dtype):
    ours_cls, torch_cls = CELLS[cell]
    reference = torch_cls(size, size).to("cuda", dtype)
    ours = ours_cls(size, size, backend="triton").to("cuda", dtype)
    ours.load_state_dict(reference.state_dict())
    return ours, reference


def _step(module, x, grad_out, backward: bool):
    out, _ = module(x)
    if backward:
        out.backward(grad_out)
    return out


def _results(module, x, grad_out):
    """Output, final state(s) and the gradients of the input and every parameter."""
    x = x.detach().requires_grad_()
    module.zero_grad(set_to_none=True)
    out, state = module(x)
    states = state if isinstance(state, tuple) else (state,)
    loss = (out.float() * grad_out.float()).sum() + sum(s.float().sum() for s in states)
    loss.backward()
    grads = [x.grad] + [p.grad for _, p in sorted(module.named_parameters())]
    return [out.detach(), *(s.detach() for s in states), *grads]


def parity(ours, reference, x, grad_out) -> float:
    """Largest relative norm error of any result; inf if anything is not finite."""
    want = _results(reference, x, grad_out)
    _poison_allocator()
    got = _results(ours, x, grad_out)
    worst = 0.0
    for g, w in zip(got, want):
        if not torch.isfinite(g).all():
            return math.inf
        worst = max(
            worst, ((g.float() - w.float()).norm() / w.float().norm().clamp_min(1e-12)).item()
        )
    return worst


def measure(cell: str, dtype_name: str, size: int, batch: int, args) -> dict:
    from triton.testing import do_bench

    dtype = DTYPES[dtype_name]
    ours, reference = _pair(cell, size, dtype)
    x = torch.randn(args.steps, batch, size, device="cuda", dtype=dtype)
    grad_out = torch.randn(args.steps, batch, size, device="cuda", dtype=dtype)
    row = {"cell": cell, "dtype": dtype_name, "H": size, "B": batch}
    row["error"] = parity(ours, reference, x, grad_out)
    if not row["error"] <= TOLERANCE[dtype_name]:
        row["note"] = "parity failed: not timed"
        return row
    x_grad = x.detach().requires_grad_()
    for name, module in (("cudnn", reference), ("triton", ours)):
        with torch.no_grad():
            row[f"{name}_fwd"] = do_bench(
                lambda m=module: _step(m, x, None, False), rep=args.rep_ms, return_mode="median"
            )
        row[f"{name}_fwdbwd"] = do_bench(
            lambda m=module: _step(m, x_grad, grad_out, True), rep=args.rep_ms, return_mode="median"
        )
    row["fwd_speedup"] = row["cudnn_fwd"] / row["triton_fwd"]
    row["fwdbwd_speedup"] = row["cudnn_fwdbwd"] / row["triton_fwdbwd"]
    return row


def _format(row: dict) -> str:
    head = f"{row['cell']:6} {row['dtype']:9} {row['H']:5} {row['B']:4}"
    if "note" in row:
        return f"{head}  {row['note']} (error {row.get('error', math.nan):.2e})"
    cols = [
        row["cudnn_fwd"],
        row["triton_fwd"],
        row["fwd_speedup"],
        row["cudnn_fwdbwd"],
        row["triton_fwdbwd"],
        row["fwdbwd_speedup"],
        row["error"],
    ]
    return head + "  {:9.3f} {:9.3f} {:6.2f}x  {:9.3f} {:9.3f} {:6.2f}x  {:.1e}".format(*cols)


def auto_table(rows: list[dict]) -> str:
    """The ``PREFERRED`` set: points where both forward and forward+backward win."""
    wins = sorted(
        (r["cell"], r["dtype"], r["H"], r["B"])
        for r in rows
        if r.get("fwd_speedup", 0) >= WIN and r.get("fwdbwd_speedup", 0) >= WIN
    )
    lines = ["PREFERRED: frozenset[tuple[str, str, int, int]] = frozenset({"]
    lines += [f"    {key!r}," for key in wins]
    return "\n".join(lines + ["})"])


def main(argv: list[str]) -> int:
    args = parse(argv)
    if not torch.cuda.is_available():
        print("rnnkit.bench gpu: no CUDA device here; nothing measured. Run it on a GPU machine.")
        return 0
    import triton

    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    print(
        f"device {torch.cuda.get_device_name()}  torch {torch.__version__}  "
        f"triton {triton.__version__}  T={args.steps}  tf32={args.tf32}  times in ms (median)"
    )
    print(
        f"{'cell':6} {'dtype':9} {'H':>5} {'B':>4}  {'cudnn fwd':>9} {'triton':>9} {'ratio':>7}"
        f"  {'cudnn f+b':>9} {'triton':>9} {'ratio':>7}  error"
    )
    rows = []
    for cell in args.cells:
        for dtype_name in args.dtypes:
            for size in args.hidden:
                for batch in args.batch:
                    try:
                        row = measure(cell, dtype_name, size, batch, args)
                    except Exception as exc:  # keep the sweep going; the row says why
                        row = {
                            "cell": cell,
                            "dtype": dtype_name,
                            "H": size,
                            "B": batch,
                            "note": f"failed: {type(exc).__name__}: {str(exc)[:80]}",
                        }
                    rows.append(row)
                    print(_format(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    if args.auto_table:
        print(auto_table(rows))
    return 0
