"""The layer benchmark: its timing helper and a tiny end-to-end run (no figures checked)."""

from __future__ import annotations

import time

import pytest
import torch

from rnnkit.bench import layers


def test_interleaved_medians_shuffles_the_order_but_keeps_each_median_with_its_callable():
    calls: list[int] = []

    def make(k: int, pause: float):
        def run():
            calls.append(k)
            time.sleep(pause)

        return run

    medians = layers.interleaved_medians([make(0, 0.0), make(1, 0.004)], repeats=8, device="cpu")
    assert medians[1] > medians[0] + 2.0  # ms: the slow callable keeps the slow median
    rounds = [tuple(calls[i : i + 2]) for i in range(2, len(calls), 2)]  # after the warm-up
    assert len(rounds) == 8 and all(sorted(r) == [0, 1] for r in rounds)  # each once a round
    assert len(set(rounds)) == 2  # and not always in the same order


def test_tiny_run_prints_both_tables(capsys):
    threads = torch.get_num_threads()
    try:
        code = layers.main(["--device", "cpu", "--cells", "lstm", "--batch", "2", "--hidden",
                            "8", "--steps", "3", "--repeats", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "| lstm | 2 | 8 |" in out and "Mixed lengths" in out
    # the machine line names the CPU's vector level, which decides the ratios
    assert f"({torch.backends.cpu.get_cpu_capability()})," in out.splitlines()[0]


def test_bad_arguments_are_named(capsys):
    for argv, message in ((["--steps", "0"], "--steps: expected an integer >= 1, got 0"),
                          (["--cells", "lstm,tree"], "--cells: unknown tree"),
                          (["--batch", "0,16"], "--batch: expected integers >= 1")):
        with pytest.raises(SystemExit) as exit_info:
            layers.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
