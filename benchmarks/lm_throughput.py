"""Training tokens/s of rnnkit's language model against the plain PyTorch script, side by side.

Same sizes, same batch, same data, same loop (forward, cross-entropy, backward, clip, AdamW); the
two run in alternating rounds so that a busy machine slows both alike. The plain model is the
one of ``benchmarks/lm_plain_torch.py`` (torch.nn.LSTM).

    python benchmarks/lm_throughput.py --data ../shared/data/tinyshakespeare/input.txt \\
        --hidden-size 512 --num-layers 2 --batch-size 32 --bptt 128 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_plain_torch import PlainLM, batchify, load  # noqa: E402

from rnnkit.models.lm import LanguageModel, LMConfig  # noqa: E402


def run_steps(model, optimizer, streams, bptt, position, steps, device) -> tuple[float, int]:
    """Train ``steps`` chunks; return (seconds, next position)."""
    hidden = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        if position + bptt + 1 > streams.shape[0]:
            position, hidden = 0, None
        x = streams[position : position + bptt].to(device)
        y = streams[position + 1 : position + 1 + bptt].to(device)
        logits, hidden = model(x, hidden)
        hidden = tuple(h.detach() for h in hidden)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        position += bptt
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, position


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train, _, vocab = load(args.data)
    streams = batchify(train, args.batch_size)
    torch.manual_seed(0)
    models = {
        "plain torch.nn.LSTM": PlainLM(vocab, args.embedding_size, args.hidden_size,
                                       args.num_layers, args.dropout),
        "rnnkit": LanguageModel(LMConfig(vocab, cell="lstm", embedding_size=args.embedding_size,
                                         hidden_size=args.hidden_size,
                                         num_layers=args.num_layers, dropout=args.dropout)),
    }
    state = {}
    for name, model in models.items():
        model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        run_steps(model, optimizer, streams, args.bptt, 0, 2, device)  # warm-up
        state[name] = [optimizer, 0, []]
    tokens = args.steps * args.bptt * args.batch_size
    for _ in range(args.rounds):
        for name, model in models.items():
            optimizer, position, rates = state[name]
            seconds, state[name][1] = run_steps(model, optimizer, streams, args.bptt, position,
                                                args.steps, device)
            rates.append(tokens / seconds)
    medians = {name: statistics.median(rates) for name, (_, _, rates) in state.items()}
    print(f"device {device}, threads {torch.get_num_threads()}, LSTM {args.num_layers}x"
          f"{args.hidden_size}, batch {args.batch_size}x{args.bptt}")
    for name, rate in medians.items():
        print(f"  {name:22s} {rate:9.0f} tokens/s (median of {args.rounds} rounds)")
    ratio = medians["rnnkit"] / medians["plain torch.nn.LSTM"]
    print(f"  rnnkit / plain = {ratio:.2f}x")


if __name__ == "__main__":
    main()
