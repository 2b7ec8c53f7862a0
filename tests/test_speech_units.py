"""Pieces of ``rnnkit speech``: WAV reading, features, SpecAugment, CTC decoding, error rates,
the connected-digit generator and the model's lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnkit.apps.speech import error_rates
from rnnkit.data.audio import FeatureConfig, compute_features, normalize, read_wav, spec_augment
from rnnkit.data.audio_connect import build_connected
from rnnkit.models.speech import SpeechModelConfig, SpeechRecognizer, output_lengths
from rnnkit.models.speech_decoding import (
    Lexicon,
    greedy_decode,
    prefix_beam_search,
    transcript_log_prob,
)

soundfile = pytest.importorskip("soundfile")  # the speech extra
pytest.importorskip("librosa")
pytest.importorskip("jiwer")


def _tone(rate: int, seconds: float = 0.5, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * frequency * t)


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_read_wav_resamples_any_rate(tmp_path, rate):
    path = tmp_path / "tone.wav"
    soundfile.write(path, _tone(rate), rate, subtype="PCM_16")
    samples = read_wav(path, 16000)
    assert samples.dtype == np.float32 and samples.shape == (8000,)
    assert abs(_peak_hz(samples, 16000) - 440.0) < 3.0


def test_read_wav_mixes_stereo_down(tmp_path):
    path = tmp_path / "stereo.wav"
    left = _tone(8000)
    soundfile.write(path, np.stack([left, 0.5 * left], axis=1), 8000, subtype="FLOAT")
    samples = read_wav(path, 8000)
    np.testing.assert_allclose(samples, 0.75 * left, atol=1e-6)


@pytest.mark.parametrize("kind, size", [("logmel", 40), ("mfcc", 13)])
def test_features_shape_and_per_utterance_normalisation(kind, size):
    config = FeatureConfig(sample_rate=8000, kind=kind)
    frames = compute_features(_tone(8000).astype(np.float32), config)
    assert frames.shape == (1 + 4000 // 80, size)  # centred frames every 10 ms
    assert config.n_fft == 256 and config.win_length == 200
    normal = normalize(frames)
    np.testing.assert_allclose(normal.mean(0), 0.0, atol=1e-4)
    assert np.all((normal.std(0) > 0.99) | (frames.std(0) < 1e-6))


def test_spec_augment_masks_inside_each_length_and_is_seeded():
    features = torch.ones(2, 50, 20)
    lengths = torch.tensor([50, 30])

    def masked(seed):
        return spec_augment(features, lengths, torch.Generator().manual_seed(seed),
                            freq_masks=2, freq_width=5, time_masks=2, time_width=10)

    first = masked(3)
    assert torch.equal(first, masked(3)) and not torch.equal(first, masked(4))
    assert torch.equal(features, torch.ones(2, 50, 20))  # the input is not changed
    assert (first == 0).any()
    assert torch.all(first[1, 30:] == features[1, 30:].mul(first[1, 30:]))  # padding untouched
    whole_frames = (first[1] == 0).all(dim=1)
    assert not whole_frames[30:].any() and whole_frames.sum() <= 2 * 6  # ≤ length/5 per mask


# ---------------------------------------------------------------------- decoding


def _log(rows):
    return torch.tensor(rows, dtype=torch.float64).log()


def test_greedy_merges_repeats_and_drops_blanks():
    # symbols: 0 blank, 1 'a', 2 'b'; best path a a - a b b - → "aab"
    rows = [[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1], [0.1, 0.6, 0.3],
            [0.1, 0.2, 0.7], [0.3, 0.1, 0.6], [0.9, 0.05, 0.05]]
    assert greedy_decode(_log(rows)) == [1, 1, 2]
    assert prefix_beam_search(_log(rows), beam_size=8) == [1, 1, 2]


def test_beam_finds_the_transcript_greedy_misses():
    # two frames, p(blank) 0.6, p(a) 0.4: the best path is "" (0.36), but
    # p("a") = 0.4·0.4 + 0.4·0.6 + 0.6·0.4 = 0.64
    rows = _log([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_decode(rows) == []
    assert prefix_beam_search(rows, beam_size=4) == [1]
    assert transcript_log_prob(rows, [1]) == pytest.approx(math.log(0.64))
    assert transcript_log_prob(rows, []) == pytest.approx(math.log(0.36))
    assert transcript_log_prob(rows, [1, 1]) == -math.inf  # "aa" needs 3 frames


def test_lexicon_holds_the_beam_to_known_words():
    # symbols: 0 blank, 1 'a', 2 'b', 3 'c', 4 ' '; frames favour "ac" but only "ab" is a word
    rows = _log([[0.1, 0.8, 0.05, 0.04, 0.01], [0.1, 0.05, 0.35, 0.49, 0.01]])
    assert greedy_decode(rows) == [1, 3]
    lexicon = Lexicon([[1, 2], [3]], space=4)
    assert prefix_beam_search(rows, beam_size=8, lexicon=lexicon) == [1, 2]
    assert lexicon.allows((1, 2, 4, 3), finished=True) and not lexicon.allows((1, 3))
    with pytest.raises(ValueError, match="lexicon"):
        Lexicon([[1, 4]], space=4)


def test_error_rates_by_hand():
    # "one two" → "one": 1 of 3 reference words deleted... plus "three" → "": 1 more
    scores = error_rates(["one two", "three"], ["one", ""])
    assert scores["wer"] == pytest.approx(2 / 3)
    assert scores["cer"] == pytest.approx((4 + 5) / (7 + 5))  # " two" and "three" deleted
    assert scores["utterance_accuracy"] == 0.0
    assert error_rates(["a b"], ["a b"]) == {"cer": 0.0, "wer": 0.0, "utterance_accuracy": 1.0}


# ---------------------------------------------------------------------- data and model


def test_connected_digits_are_deterministic(tmp_path):
    source = tmp_path / "rec"
    source.mkdir()
    recordings = []
    for digit in range(3):
        for take in range(2):
            path = source / f"{digit}_alice_{take}.wav"
            soundfile.write(path, _tone(8000, 0.2, 300 + 200 * digit), 8000, subtype="PCM_16")
            recordings.append(path)
    one = build_connected(recordings, tmp_path / "one", 5, seed=7, min_digits=2, max_digits=3)
    two = build_connected(recordings[::-1], tmp_path / "two", 5, seed=7, min_digits=2,
                          max_digits=3)
    assert one.read_text() == two.read_text()
    for line in one.read_text().splitlines():
        name, text = line.split("\t")
        assert 2 <= len(text.split()) <= 3 and set(text.split()) <= {"zero", "one", "two"}
        assert (one.parent / name).read_bytes() == (two.parent / name).read_bytes()
    other = build_connected(recordings, tmp_path / "three", 5, seed=8)
    assert other.read_text() != one.read_text()


@pytest.mark.parametrize("subsample", [1, 2, 4])
def test_model_lengths_and_padding(subsample):
    config = SpeechModelConfig(hidden_size=8, num_layers=2, subsample=subsample,
                               conv_channels=6, dropout=0.0)
    model = SpeechRecognizer(5, 4, config).eval()
    frames = torch.randn(2, 23, 5)
    with torch.no_grad():
        log_probs, lengths = model(frames, torch.tensor([23, 17]))
        alone, _ = model(frames[1:, :17], torch.tensor([17]))
    assert lengths.tolist() == output_lengths(torch.tensor([23, 17]), subsample).tolist()
    assert log_probs.shape == (2, int(lengths[0]), 4)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, int(lengths[0])), atol=1e-5)
    torch.testing.assert_close(log_probs[1, :int(lengths[1])], alone[0], atol=1e-5, rtol=1e-5)


def test_model_config_refuses_bad_subsample():
    with pytest.raises(ValueError, match="subsample"):
        SpeechModelConfig(subsample=3)


def test_missing_extra_is_a_clean_error(monkeypatch):
    from rnnkit.data.audio import require
    from rnnkit.errors import RnnkitError

    monkeypatch.setitem(__import__("sys").modules, "jiwer", None)
    with pytest.raises(RnnkitError, match=r"needs the jiwer package: pip install 'rnnkit\["):
        error_rates(["a"], ["a"])
    assert require("math").sqrt(4.0) == 2.0


def test_speed_perturbation_scales_duration_and_pitch():
    from rnnkit.data.audio import speed_perturb

    samples = _tone(8000).astype(np.float32)  # 0.5 s of 440 Hz
    assert speed_perturb(samples, 8000, 1.0) is samples
    faster = speed_perturb(samples, 8000, 1.1)
    slower = speed_perturb(samples, 8000, 0.9)
    assert faster.dtype == np.float32
    assert abs(len(faster) - 4000 / 1.1) <= 2 and abs(len(slower) - 4000 / 0.9) <= 2
    assert abs(_peak_hz(faster, 8000) - 484.0) < 5.0
    assert abs(_peak_hz(slower, 8000) - 396.0) < 5.0


def test_speed_perturb_option_is_checked():
    from rnnkit.apps.speech import SpeechConfig

    assert SpeechConfig(speed_perturb="0.9, 1.1,1.0").speeds() == (1.0, 0.9, 1.1)
    assert SpeechConfig().speeds() == (1.0,)
    with pytest.raises(ValueError, match="--speed-perturb: 'fast' is not a number"):
        SpeechConfig(speed_perturb="0.9,fast")
    with pytest.raises(ValueError, match=r"--speed-perturb: factors must be in \[0.5, 2\]"):
        SpeechConfig(speed_perturb="3")


def test_nbest_lists_the_final_beam_best_first_without_impossible_ones():
    from rnnkit.models.speech_decoding import prefix_beam_nbest

    rows = _log([[0.6, 0.4], [0.6, 0.4]])  # p("a") = 0.64, p("") = 0.36, "aa" impossible
    assert prefix_beam_nbest(rows, beam_size=4) == [[1], []]
    lexicon_rows = _log([[0.1, 0.8, 0.05, 0.04, 0.01], [0.1, 0.05, 0.35, 0.49, 0.01]])
    found = prefix_beam_nbest(lexicon_rows, 8, Lexicon([[1, 2], [3]], space=4))
    assert found[0] == [1, 2] and all(ids in ([1, 2], [3]) for ids in found)


def test_ensemble_picks_the_transcript_of_highest_mixture_probability():
    from rnnkit.apps.speech import _decode

    sure_of_a = _log([[0.6, 0.4], [0.6, 0.4]])       # p("a") 0.64, p("") 0.36
    sure_of_none = _log([[0.95, 0.05], [0.95, 0.05]])  # p("a") 0.0975, p("") 0.9025
    alone = _decode([sure_of_a], 1, None)
    assert alone[0] == [] and alone[1] == pytest.approx(math.log(0.36))  # greedy misses "a"
    twice = _decode([sure_of_a, sure_of_a], 1, None)
    assert twice[0] == [] and twice[1] == pytest.approx(alone[1])
    # mixture: p("") = (0.36 + 0.9025) / 2 = 0.63125 beats p("a") = (0.64 + 0.0975) / 2
    ids, log_prob = _decode([sure_of_a, sure_of_none], 4, None)
    assert ids == [] and log_prob == pytest.approx(math.log(0.63125))
    leaning_a = _log([[0.5, 0.5], [0.5, 0.5]])  # p("a") 0.75, p("") 0.25
    ids, log_prob = _decode([sure_of_a, leaning_a], 4, None)
    assert ids == [1] and log_prob == pytest.approx(math.log((0.64 + 0.75) / 2))
