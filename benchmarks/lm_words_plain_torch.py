"""Plain PyTorch word-level LSTM language model: the baseline of rnnkit's word LM
(``rnnkit vectors train`` / ``rnnkit lm train --tokenizer word``), same size, same time budget.

torch.nn.Embedding → torch.nn.LSTM → dropout → torch.nn.AdaptiveLogSoftmaxWithLoss (or a full
torch.nn.Linear softmax), AdamW (lr 2e-3, betas 0.9/0.99, weight decay 0.01 — rnnkit's
defaults), gradient clipping at 1, a cosine learning-rate decay to 10 % over the time budget, a
standard truncated-BPTT loop with the hidden state carried and detached. Tokens and vocabulary
as rnnkit's word tokenizer makes them (regex ``\\w+|[^\\w\\s]|\\n``, words seen fewer than
--min-freq times → <unk>, ids by descending frequency). No rnnkit import.

    python benchmarks/lm_words_plain_torch.py --train brown/train.txt --valid brown/valid.txt \\
        --test brown/test.txt --minutes 12 --threads 1

Prints tokens/s and validation perplexity (on a --valid-tokens sample) every --eval-minutes
(evaluation time counts in the budget, as rnnkit's --max-minutes counts it), then the test
perplexity of the best-validation weights (whole test file).
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import time
from collections import Counter

import torch
from torch import nn

PATTERN = re.compile(r"\w+|[^\w\s]|\n")


class PlainWordLM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float,
                 cutoffs: list[int] | None):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.rnn = nn.LSTM(embedding, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab, cutoffs) if cutoffs else None
        self.decoder = None if cutoffs else nn.Linear(hidden, vocab)

    def forward(self, tokens, targets, hidden=None):
        """Summed next-token loss (nats) and the new state."""
        output, hidden = self.rnn(self.dropout(self.embedding(tokens)), hidden)
        output = self.dropout(output).flatten(0, 1)
        if self.adaptive is not None:
            return self.adaptive(output, targets.flatten()).loss * targets.numel(), hidden
        return nn.functional.cross_entropy(self.decoder(output), targets.flatten(),
                                           reduction="sum"), hidden


def vocabulary(path: str, min_freq: int, max_size: int) -> dict[str, int]:
    counts = Counter(PATTERN.findall(open(path, encoding="utf-8").read()))
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return {w: i for i, w in enumerate(["<unk>", *words[:max_size - 1]])}


def encode(path: str, table: dict[str, int]) -> torch.Tensor:
    return torch.tensor([table.get(w, 0) for w in PATTERN.findall(open(path).read())],
                        dtype=torch.long)


def streams(data: torch.Tensor, batch: int) -> torch.Tensor:
    steps = len(data) // batch
    return data[: steps * batch].view(batch, steps).t().contiguous()  # (L, B)


def chunks(stream: torch.Tensor, bptt: int, limit: int | None = None):
    for p in range(0, stream.shape[0] - 1, bptt):
        if limit is not None and p * stream.shape[1] >= limit:
            return
        length = min(bptt, stream.shape[0] - 1 - p)
        yield stream[p: p + length], stream[p + 1: p + 1 + length], p == 0


def evaluate(model, stream, bptt, limit=None) -> float:
    model.eval()
    total, count, hidden = 0.0, 0, None
    with torch.no_grad():
        for x, y, _ in chunks(stream, bptt, limit):
            loss, hidden = model(x, y, hidden)
            total += loss.item()
            count += y.numel()
    model.train()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--min-freq", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=50000)
    parser.add_argument("--embedding-size", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--softmax", choices=("adaptive", "full"), default="adaptive")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--eval-minutes", type=float, default=2.0)
    parser.add_argument("--valid-tokens", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    table = vocabulary(args.train, args.min_freq, args.vocab_size)
    vocab = len(table)
    cutoffs = [c for c in (2000, 10000, 50000) if c < vocab - 1] or [vocab // 2]
    train = streams(encode(args.train, table), args.batch_size)
    valid, test = streams(encode(args.valid, table), 32), streams(encode(args.test, table), 32)
    model = PlainWordLM(vocab, args.embedding_size, args.hidden_size, args.num_layers,
                        args.dropout, cutoffs if args.softmax == "adaptive" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99),
                                  weight_decay=0.01)
    budget = args.minutes * 60
    start = last_eval = time.monotonic()
    tokens, hidden, step, best, best_state = 0, None, 0, math.inf, None
    print(f"vocabulary {vocab}, {train.numel()} training tokens, softmax {args.softmax}",
          flush=True)
    done = False
    while not done:
        for x, y, reset in chunks(train, args.bptt):
            if reset:
                hidden = None
            elapsed = time.monotonic() - start
            for group in optimizer.param_groups:  # cosine to 10 % over the time budget
                progress = min(elapsed / budget, 1.0)
                group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
            loss, hidden = model(x, y, hidden)
            hidden = tuple(h.detach() for h in hidden)
            optimizer.zero_grad()
            (loss / y.numel()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            tokens += y.numel()
            step += 1
            now = time.monotonic()
            done = now - start >= budget
            if done or now - last_eval >= args.eval_minutes * 60:
                valid_loss = evaluate(model, valid, args.bptt, args.valid_tokens)
                if valid_loss < best:
                    best, best_state = valid_loss, copy.deepcopy(model.state_dict())
                print(f"{(now - start) / 60:6.2f} min  step {step}  epoch "
                      f"{tokens / train.numel():.2f}  valid ppl {math.exp(valid_loss):.1f}  "
                      f"{tokens / (now - start):.0f} tok/s", flush=True)
                last_eval = time.monotonic()  # evaluations count in the budget, as in rnnkit's
            if done:
                break
    model.load_state_dict(best_state)
    test_loss = evaluate(model, test, args.bptt)
    print(f"best valid ppl {math.exp(best):.2f} (sample)  test ppl {math.exp(test_loss):.2f}  "
          f"({test.numel()} test tokens, {step} steps, {tokens} training tokens)")


if __name__ == "__main__":
    main()
