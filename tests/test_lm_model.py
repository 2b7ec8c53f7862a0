"""Language model: learns a pattern, carries and detaches the TBPTT state, checkpoints exactly,
samples reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.apps import runner
from rnnkit.apps.lm import LM, LMModel, LMOptions
from rnnkit.data.streams import TokenStreams
from rnnkit.data.tokenizers import build_tokenizer
from rnnkit.models.lm import LanguageModel, LMConfig
from rnnkit.tasks.lm import LanguageModelTask, Prepared
from rnnkit.tasks.lm_generate import SampleConfig, sample_text
from rnnkit.train import Shard, TrainConfig

PATTERN = "abcdefgh\n" * 400


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_task(**kw) -> LMOptions:
    base = {**dict(bptt=16, batch_size=8, embedding_size=16, hidden_size=32, num_layers=1,
                   dropout=0.0), **kw}
    model = {k: base.pop(k) for k in list(base) if k in LMModel.__dataclass_fields__}
    return LMOptions(**base, model=LMModel(**model))


def train_lm(config, train, out, **kw):
    return runner.train(LM(), config, train, out, **kw)


def load_lm(path, device):
    loaded = runner.load("lm", path, device)
    return loaded.model, loaded.tokenizer, loaded.options


def fast_train(**kw) -> TrainConfig:
    base = dict(lr=1e-2, max_epochs=None, max_steps=60, eval_every=30, progress=False,
                plot=False, threads=1)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_learns_a_deterministic_pattern(tmp_path, cell):
    (tmp_path / "p.txt").write_text(PATTERN)
    config = tiny_task(train=str(tmp_path / "p.txt"), cell=cell, tie_weights=cell == "gru")
    result = train_lm(config, fast_train(), tmp_path / "run")
    assert result.best_metric < 0.3, result.best_metric  # from ln(10) ≈ 2.3


def test_tbptt_state_is_carried_and_detached():
    tokenizer = build_tokenizer("char", [PATTERN])
    tokens = np.asarray(tokenizer.encode(PATTERN))
    cfg = LMConfig(tokenizer.vocab_size, embedding_size=8, hidden_size=16, num_layers=2,
                   dropout=0.0)
    torch.manual_seed(0)
    model = LanguageModel(cfg)
    task = LanguageModelTask(tiny_task(bptt=5, batch_size=3), cfg,
                             Prepared(tokenizer, tokens, tokens, 1.0), 0)
    batches = iter(task.train_batches(0, Shard()))
    first, second = next(batches), next(batches)
    task.step(model, first)
    assert all(h.grad_fn is None and not h.requires_grad for h in task.hidden)
    out = task.step(model, second)
    out.loss.backward()  # would fail ("backward through the graph a second time") if not cut
    with torch.no_grad():
        whole, _ = model(torch.cat([first.inputs, second.inputs]))
        carried, _ = model(second.inputs, tuple(h for h in _first_state(model, first)))
    torch.testing.assert_close(carried, whole[5:])
    streams = TokenStreams(tokens, 3, 5)
    assert torch.equal(second.inputs, streams.chunk(5, 5, False).inputs)


def _first_state(model, batch):
    with torch.no_grad():
        return model(batch.inputs)[1]


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    (tmp_path / "p.txt").write_text(PATTERN)
    config = tiny_task(train=str(tmp_path / "p.txt"), num_layers=2, dropout=0.1)
    train_lm(config, fast_train(max_steps=10, eval_every=10), tmp_path / "run")
    model, tokenizer, _ = load_lm(tmp_path / "run", "cpu")
    again, _, _ = load_lm(tmp_path / "run" / "best", "cpu")
    ids = torch.tensor(tokenizer.encode("abcdefgh\nabc")).unsqueeze(1)
    with torch.no_grad():
        assert torch.equal(model(ids)[0], again(ids)[0])
    # and the weights are the ones the training process ended with
    state = torch.load(tmp_path / "run/last/trainer_state.pt", weights_only=True)
    assert state["step"] == 10


def test_generation_is_reproducible_with_a_seed(tmp_path):
    (tmp_path / "p.txt").write_text(PATTERN)
    train_lm(tiny_task(train=str(tmp_path / "p.txt")), fast_train(max_steps=5, eval_every=5),
             tmp_path / "run")
    model, tokenizer, _ = load_lm(tmp_path / "run", "cpu")

    def sample(seed, **kw):
        config = SampleConfig(max_tokens=40, temperature=1.5, seed=seed, **kw)
        return "".join(sample_text(model, tokenizer, "ab", config))

    assert sample(1) == sample(1) and sample(1).startswith("ab") and len(sample(1)) == 42
    assert sample(1) != sample(2)
    assert sample(1, top_k=1) == sample(7, greedy=True)
    assert sample(3, top_p=0.5) == sample(3, top_p=0.5)


class _StopAt:
    """Callback interrupting the run after ``step`` optimizer steps (like Ctrl-C)."""

    def __init__(self, step):
        self.at = step

    def on_after_backward(self, trainer):
        pass

    def on_step_begin(self, trainer):
        pass

    def on_step_end(self, trainer, record):
        if trainer.step >= self.at:
            raise KeyboardInterrupt

    def on_eval(self, trainer, metrics):
        pass

    def on_fit_end(self, trainer):
        pass


def test_interrupted_and_resumed_lm_run_matches_uninterrupted(tmp_path):
    """The carried TBPTT state, random chunk lengths and dropout all resume exactly."""
    (tmp_path / "p.txt").write_text(PATTERN)
    config = tiny_task(train=str(tmp_path / "p.txt"), num_layers=2, dropout=0.2,
                       random_bptt=True, batch_size=4)
    train = fast_train(max_steps=24, eval_every=8, log_every=1)
    train_lm(config, train, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train_lm(config, train, tmp_path / "b", callbacks=[_StopAt(13)])
    train_lm(config, train, tmp_path / "b", resume=tmp_path / "b")
    full, _, _ = load_lm(tmp_path / "a/last", "cpu")
    resumed, _, _ = load_lm(tmp_path / "b/last", "cpu")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
