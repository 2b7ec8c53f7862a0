"""Encoder–decoder and decoding: masking of padded sources, step-by-step = whole-sequence
decoding, tied embeddings, beam size 1 = greedy, beam never below greedy."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models.decoding import beam_search, greedy, length_penalty
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig


def assert_close(actual, expected, *, rtol, atol, what):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol,
                               msg=lambda m: f"{what}: {m}")

OPTIONS = [  # (cell, attention, bidirectional, layers, tied)
    ("gru", "additive", True, 1, False),
    ("gru", "dot", True, 2, True),
    ("lstm", "additive", False, 1, False),
    ("lstm", "none", True, 2, True),
    ("rnn", "dot", True, 1, False),
    ("gru", "none", False, 1, False),
]


def make(cell, attention, bidirectional, layers, tied, vocab=13) -> Seq2Seq:
    torch.manual_seed(0)
    config = Seq2SeqConfig(vocab, vocab + 2, cell=cell, embedding_size=12, hidden_size=16,
                           num_layers=layers, bidirectional=bidirectional, attention=attention,
                           dropout=0.0, tie_embeddings=tied)
    return Seq2Seq(config).eval()


def batch(lengths, vocab=13, seed=1):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, vocab, (len(lengths), max(lengths)), generator=generator)
    for row, n in enumerate(lengths):
        src[row, n:] = 0
    return src, torch.tensor(lengths)


@pytest.mark.parametrize("options", OPTIONS)
def test_padding_changes_nothing(options):
    model = make(*options)
    src, lengths = batch([4, 7, 2])
    tgt = torch.randint(3, 13, (3, 5))
    with torch.no_grad():
        memory, state = model.encode(src, lengths)
        logits, _, weights = model.decode(tgt, state, memory)
        for row, n in enumerate(lengths.tolist()):
            alone_memory, alone_state = model.encode(src[row : row + 1, :n], lengths[row : row + 1])
            alone_logits, _, alone_weights = model.decode(tgt[row : row + 1], alone_state,
                                                          alone_memory)
            assert_close(memory.outputs[row, :n], alone_memory.outputs[0], rtol=1e-5,
                         atol=1e-6, what="encoder outputs")
            assert torch.all(memory.outputs[row, n:] == 0)
            first = state[0] if isinstance(state, tuple) else state
            alone_first = alone_state[0] if isinstance(alone_state, tuple) else alone_state
            assert_close(first[:, row], alone_first[:, 0], rtol=1e-5, atol=1e-6,
                         what="decoder's first state")
            assert_close(logits[row], alone_logits[0], rtol=1e-5, atol=1e-5, what="logits")
            if weights is not None:
                assert_close(weights[row, :, :n], alone_weights[0], rtol=1e-5, atol=1e-6,
                             what="attention")
                assert torch.all(weights[row, :, n:] == 0)


@pytest.mark.parametrize("options", OPTIONS[:4])
def test_step_by_step_equals_whole_sequence(options):
    model = make(*options)
    src, lengths = batch([5, 3])
    tgt = torch.randint(3, 13, (2, 6))
    with torch.no_grad():
        memory, state = model.encode(src, lengths)
        whole = model.decode(tgt, state, memory)[0]
        steps = []
        for t in range(tgt.shape[1]):
            logits, state, _ = model.decode(tgt[:, t : t + 1], state, memory)
            steps.append(logits)
    assert_close(torch.cat(steps, 1), whole, rtol=1e-5, atol=1e-5, what="decoder")


def test_tied_embeddings_share_the_matrix_and_teacher_forcing_runs():
    model = make("gru", "additive", True, 1, True).train()
    assert model.output.weight is model.tgt_embedding.weight
    src, lengths = batch([5, 3])
    logits = model(src, lengths, torch.randint(3, 13, (2, 4)), teacher_forcing=0.5)
    assert logits.shape == (2, 4, 15)
    logits.sum().backward()
    assert model.encoder.weight_ih_l0.grad is not None


def test_bad_config_names_the_option():
    with pytest.raises(ValueError, match="attention: expected one of none, additive, dot"):
        Seq2SeqConfig(5, 5, attention="multihead")
    with pytest.raises(ValueError, match="hidden_size"):
        Seq2SeqConfig(5, 5, hidden_size=0)


@pytest.mark.parametrize("options", OPTIONS)
def test_beam_size_one_is_greedy(options):
    model = make(*options)
    src, lengths = batch([6, 1, 4, 6], seed=3)
    expected = greedy(model, src, lengths, max_len_a=1.0, max_len_b=4, return_attention=True)
    got = beam_search(model, src, lengths, beam_size=1, max_len_a=1.0, max_len_b=4, alpha=0.0,
                      return_attention=True)
    assert got.tokens == expected.tokens
    assert_close(got.scores, expected.scores.cpu(), rtol=1e-5, atol=1e-5, what="scores")
    if expected.attention is not None:
        for a, b, tokens, n in zip(got.attention, expected.attention, got.tokens, lengths,
                                   strict=True):
            assert a.shape == (len(tokens), int(n))
            assert_close(a, b, rtol=1e-5, atol=1e-6, what="attention")
            assert_close(a.sum(-1), torch.ones(len(tokens)), rtol=1e-5, atol=1e-5,
                         what="attention rows sum to 1")


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_never_scores_below_greedy(options, alpha):
    model = make(*options)
    src, lengths = batch([6, 2, 5, 3, 6], seed=4)
    found = greedy(model, src, lengths, alpha=alpha)
    for size in (2, 4):
        beam = beam_search(model, src, lengths, beam_size=size, alpha=alpha)
        assert torch.all(beam.scores >= found.scores - 1e-5)


def test_scores_are_the_log_probability_of_the_output():
    model = make("gru", "additive", True, 1, False)
    src, lengths = batch([4, 6], seed=5)
    hyps = beam_search(model, src, lengths, beam_size=3, alpha=0.6, max_len_b=3)
    cfg = model.config
    for row, tokens in enumerate(hyps.tokens):
        limit = int(1.5 * int(lengths[row]) + 3)
        ended = len(tokens) < limit  # the <eos> step counts unless the limit cut it off
        target = torch.tensor([tokens + ([cfg.eos_id] if ended else [])])
        tgt_in = torch.tensor([[cfg.bos_id, *tokens]])[:, : target.shape[1]]
        with torch.no_grad():
            logits = model(src[row : row + 1, : lengths[row]], lengths[row : row + 1], tgt_in)
        log_p = torch.log_softmax(logits, -1).gather(-1, target[..., None]).sum()
        assert_close(hyps.log_probs[row], log_p, rtol=1e-4, atol=1e-4, what="log p")
        assert_close(hyps.scores[row], log_p / length_penalty(len(tokens), 0.6), rtol=1e-4,
                     atol=1e-4, what="score")


def test_config_saved_with_the_old_embedding_name_still_builds():
    from rnnkit.models._config import renamed

    saved = {**make("gru", "dot", True, 1, False).config.to_dict()}
    saved["embed_dim"] = saved.pop("embedding_size")
    config = Seq2SeqConfig(**renamed(saved))
    assert config.embedding_size == 12 and Seq2Seq(config).src_embedding.embedding_dim == 12
