"""A toy application in one file: echo a sequence of tokens one step late.

It exists to prove the application contract: registered with one line
(``register("echo")(Echo)``), it gets ``train``/``eval``/``predict``, ``--config``,
``--resume`` and torchrun from rnnkit without a line of its own for them.

Data: one sequence per line, tokens separated by spaces. The model reads the sequence with a
GRU and predicts, at step t, the token of step t-1 (the first token at step 0): what the state
must carry from one step to the next.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as nnf

import rnnkit
from rnnkit.apps import Application, Checkpoint, NoOptions, PrepareContext
from rnnkit.data.bucketing import pad_sequences
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section


@dataclass
class EchoModel:
    embedding_size: int = option(16, "token embedding size")
    hidden_size: int = option(32, "hidden units")


@dataclass
class EchoConfig:
    train: str = option("", "training file: one token sequence per line")
    valid: str = option("", "validation file", aliases=("dev",))
    batch_size: int = option(16, "sequences per batch")
    model: EchoModel = section(EchoModel, "model")


@dataclass
class PredictOptions:
    input: str = option("-", "sequences to echo, one per line (- = stdin)")


def read_sequences(path: str) -> list[list[str]]:
    sequences = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            tokens = line.split()
            if not tokens:
                raise RnnkitError(f"{path}:{number}: empty line (one sequence per line)")
            sequences.append(tokens)
    return sequences


class Echoer(nn.Module):
    def __init__(self, vocab_size: int, config: EchoModel) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=0)
        self.rnn = rnnkit.GRU(config.embedding_size, config.hidden_size, batch_first=True)
        self.output = nn.Linear(config.hidden_size, vocab_size)

    def forward(self, ids, lengths):
        states, _ = self.rnn(self.embedding(ids), lengths=lengths)  # (B, T, H)
        return self.output(states)  # (B, T, V)


def _batch(vocab: Vocabulary, sequences: list[list[str]]):
    ids = [vocab.encode(s) for s in sequences]
    inputs, lengths = pad_sequences(ids, vocab.pad_id)
    targets, _ = pad_sequences([_late(i) for i in ids], -100)
    return inputs, lengths, targets


def _late(tokens: list) -> list:
    """The sequence one step late: the first token, then each token of the step before."""
    return tokens[:1] + tokens[:-1]


def _loss(model, batch):
    inputs, lengths, targets = batch
    logits = model(inputs, lengths)
    return nnf.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


class EchoTask:
    monitor, monitor_mode, unit = "valid_loss", "min", "seq"

    def __init__(self, config, data, seed):
        self.config, self.vocab, self.seed = config, data["vocab"], seed
        self.train_seqs, self.valid_seqs = data["train"], data["valid"]

    def train_batches(self, epoch, shard):
        order = list(range(shard.rank, len(self.train_seqs), shard.world_size))
        random.Random(self.seed + epoch).shuffle(order)
        size = self.config.batch_size
        return [_batch(self.vocab, [self.train_seqs[i] for i in order[k:k + size]])
                for k in range(0, len(order), size)]

    def step(self, model, batch):
        return StepOutput(_loss(model, batch), len(batch[1]))

    def evaluate(self, model):
        return {"valid_loss": float(_loss(model, _batch(self.vocab, self.valid_seqs)))}

    def checkpoint_files(self):
        return {"config.json": {"vocab_size": len(self.vocab)}, "vocab.json": self.vocab.to_json()}


class Echo(Application):
    summary = "echo a token sequence one step late (a toy)"
    examples = "rnnkit echo train --train seqs.txt --valid valid.txt"
    Config = EchoConfig
    EvalOptions = NoOptions
    PredictOptions = PredictOptions

    def prepare(self, config, context: PrepareContext):
        if not config.train:
            raise RnnkitError("--train: required")
        train = read_sequences(config.train)
        valid = read_sequences(config.valid) if config.valid else train[:32]
        if context.resume is not None:
            vocab = Vocabulary.from_json(context.resume.read_json("vocab.json"))
        else:
            vocab = Vocabulary.build(train, specials=(PAD, UNK))
        return {"vocab": vocab, "train": train, "valid": valid}

    def build_model(self, config, data):
        return Echoer(len(data["vocab"]), config.model)

    def task(self, config, data, seed):
        return EchoTask(config, data, seed)

    def load(self, checkpoint: Checkpoint):
        vocab = Vocabulary.from_json(checkpoint.read_json("vocab.json"))
        model = checkpoint.load_weights(Echoer(len(vocab), checkpoint.options.model))
        return model, vocab, checkpoint.options

    def evaluate(self, loaded, options):
        model, vocab, config = loaded
        sequences = read_sequences(config.valid or config.train)
        with torch.no_grad():
            logits = model(*_batch(vocab, sequences)[:2])
        correct = total = 0
        for row, tokens in zip(logits.argmax(-1), sequences, strict=True):
            predicted = vocab.decode(row[: len(tokens)].tolist())
            correct += predicted == _late(tokens)
            total += 1
        return {"sequence_accuracy": correct / total, "sequences": total}

    def predict(self, loaded, options):
        import sys

        model, vocab, _ = loaded
        handle = sys.stdin if options.input == "-" else open(options.input, encoding="utf-8")
        with handle, torch.no_grad():
            for line in handle:
                tokens = line.split()
                if not tokens:
                    continue
                logits = model(*_batch(vocab, [tokens])[:2])
                yield " ".join(vocab.decode(logits[0].argmax(-1).tolist())) + "\n"
