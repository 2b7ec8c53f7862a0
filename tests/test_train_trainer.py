"""Trainer on a toy task: learns, checkpoints, resumes exactly, stops on NaN, early-stops."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rnnkit.errors import RnnkitError
from rnnkit.train import Callback, StepOutput, TrainConfig, Trainer, seed_everything
from rnnkit.train import checkpoint as ckpt


class ToyTask:
    """Regression y = x·w with noise-free targets, 8 batches per epoch."""

    name, monitor, monitor_mode, unit = "toy", "valid_loss", "min", "ex"

    def __init__(self, nan_at: int | None = None) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.nan_at, self.calls = nan_at, 0

    def train_batches(self, epoch, shard):
        order = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        return [order[i : i + 8] for i in range(0, 64, 8)]

    def step(self, model, batch):
        self.calls += 1
        loss = nn.functional.mse_loss(model(self.x[batch]).squeeze(1), self.y[batch])
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return StepOutput(loss, count=len(batch))

    def evaluate(self, model):
        return {"valid_loss": nn.functional.mse_loss(model(self.x).squeeze(1), self.y).item()}

    def checkpoint_files(self):
        return {"config.json": {"in": 4}}


def make_model():
    seed_everything(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))


def config(**kw):
    base = dict(lr=1e-2, max_epochs=None, max_steps=40, eval_every=10, progress=False,
                log_every=5, plot=False)
    return TrainConfig(**{**base, **kw})


def test_learns_and_writes_run_directory(tmp_path):
    result = Trainer(make_model(), ToyTask(), config(max_steps=120, plot=True), tmp_path).fit()
    assert result.best_metric < 0.5 and result.stop_reason == "max_steps"
    for name in ("best/model.safetensors", "best/config.json", "last/trainer_state.pt",
                 "metrics.jsonl", "loss.png"):
        assert (tmp_path / name).exists(), name
    config_json = json.loads((tmp_path / "last/config.json").read_text())
    assert config_json["task"] == "toy" and config_json["step"] == 120
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("grad_norm" in r for r in records) and any("valid_loss" in r for r in records)


class StopAt(Callback):
    def __init__(self, step):
        self.at = step

    def on_step_end(self, trainer, record):
        if trainer.step >= self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, schedule):
    full = make_model()
    Trainer(full, ToyTask(), config(schedule=schedule), tmp_path / "a").fit()
    part = make_model()
    with pytest.raises(KeyboardInterrupt):
        Trainer(part, ToyTask(), config(schedule=schedule), tmp_path / "b",
                callbacks=[StopAt(25)]).fit()
    assert json.loads((tmp_path / "b/last/config.json").read_text())["step"] == 20
    resumed = make_model()  # fresh weights: everything must come from the checkpoint
    Trainer(resumed, ToyTask(), config(schedule=schedule), tmp_path / "b").fit(
        resume=tmp_path / "b")
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    trainer = Trainer(make_model(), ToyTask(nan_at=15), config(), tmp_path)
    with pytest.raises(RnnkitError, match=r"step 15: training loss is nan.*kept in .*step 10"):
        trainer.fit()
    assert json.loads((tmp_path / "last/config.json").read_text())["step"] == 10
    assert not list(tmp_path.glob(".last*"))  # no temporary leftovers


def test_early_stopping(tmp_path):
    result = Trainer(make_model(), ToyTask(), config(lr=1e-9, max_steps=400, eval_every=2,
                                                     patience=2), tmp_path).fit()
    assert result.stop_reason == "early_stopping" and result.steps < 400


def test_sgd_and_checkpoint_weights_round_trip(tmp_path):
    model = make_model()
    Trainer(model, ToyTask(), config(optimizer="sgd", max_steps=10), tmp_path).fit()
    other = make_model()
    ckpt.load_weights(ckpt.resolve_checkpoint(tmp_path, prefer="last"), other)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    wrong = nn.Linear(4, 1)
    with pytest.raises(RnnkitError, match="do not fit"):
        ckpt.load_weights(tmp_path / "last", wrong)


def test_bad_config_values():
    with pytest.raises(ValueError, match="--lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="--max-steps"):
        TrainConfig(max_steps=0)


def test_metrics_go_to_tensorboard_when_available(tmp_path, monkeypatch):
    from rnnkit.train import logging as train_logging

    scalars = []

    class FakeWriter:
        def add_scalar(self, key, value, step):
            scalars.append((key, step))

        def close(self):
            scalars.append(("closed", None))

    monkeypatch.setattr(train_logging, "_tensorboard_writer", lambda directory: FakeWriter())
    Trainer(make_model(), ToyTask(), config(max_steps=10), tmp_path).fit()
    assert ("train_loss", 5) in scalars and ("valid_loss", 10) in scalars
    assert scalars[-1] == ("closed", None)
