"""Plain PyTorch character language model: the baseline rnnkit's LM is measured against.

torch.nn.Embedding → torch.nn.LSTM → dropout → torch.nn.Linear, AdamW, gradient clipping, a
standard truncated-BPTT loop with the hidden state carried and detached. No rnnkit import.

    python benchmarks/lm_plain_torch.py --data ../shared/data/tinyshakespeare/input.txt \\
        --hidden-size 512 --num-layers 2 --minutes 15

Prints training tokens/s and, every --eval-minutes, the validation loss (last 10 %, nats/char).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


class PlainLM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.rnn = nn.LSTM(embedding, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens, hidden=None):
        output, hidden = self.rnn(self.dropout(self.embedding(tokens)), hidden)
        return self.decoder(self.dropout(output)), hidden


def load(path: str):
    text = open(path, encoding="utf-8").read()
    chars = sorted(set(text))
    table = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([table[c] for c in text], dtype=torch.long)
    split = int(len(data) * 0.9)
    return data[:split], data[split:], len(chars)


def batchify(data: torch.Tensor, batch: int) -> torch.Tensor:
    steps = len(data) // batch
    return data[: steps * batch].view(batch, steps).t().contiguous()  # (L, B)


def evaluate(model, streams, bptt) -> float:
    model.eval()
    total, count, hidden = 0.0, 0, None
    with torch.no_grad():
        for p in range(0, streams.shape[0] - 1, bptt):
            length = min(bptt, streams.shape[0] - 1 - p)
            x, y = streams[p : p + length], streams[p + 1 : p + 1 + length]
            logits, hidden = model(x, hidden)
            total += nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                                 reduction="sum").item()
            count += y.numel()
    model.train()
    return total / count


def train_chunks(streams, bptt):
    while True:
        for p in range(0, streams.shape[0] - 1, bptt):
            length = min(bptt, streams.shape[0] - 1 - p)
            yield streams[p : p + length], streams[p + 1 : p + 1 + length], p == 0


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
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=0, help="stop after N steps (0: time)")
    parser.add_argument("--eval-minutes", type=float, default=2.5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, valid, vocab = load(args.data)
    train_streams, valid_streams = batchify(train, args.batch_size), batchify(valid, 32)
    model = PlainLM(vocab, args.embedding_size, args.hidden_size, args.num_layers, args.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    start = last_eval = time.monotonic()
    tokens, hidden, step, best = 0, None, 0, math.inf
    for x, y, reset in train_chunks(train_streams, args.bptt):
        if reset:
            hidden = None
        logits, hidden = model(x, hidden)
        hidden = tuple(h.detach() for h in hidden)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += y.numel()
        step += 1
        now = time.monotonic()
        done = (args.steps and step >= args.steps) or (
            not args.steps and now - start >= args.minutes * 60)
        if done or now - last_eval >= args.eval_minutes * 60:
            elapsed = now - start
            valid_loss = evaluate(model, valid_streams, args.bptt)
            best = min(best, valid_loss)
            print(f"{elapsed / 60:6.2f} min  step {step}  train {loss.item():.3f}  "
                  f"valid {valid_loss:.4f}  {tokens / elapsed:.0f} tok/s", flush=True)
            start += time.monotonic() - now  # evaluation does not count as training time
            last_eval = time.monotonic()
        if done:
            break
    print(f"best valid {best:.4f} nats/char")


if __name__ == "__main__":
    main()
