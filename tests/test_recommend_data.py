"""rnnkit recommend, data side: the reader, id mapping, splits, ranking metrics, baselines."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.data.interactions import Case, ItemIndex, read_log, split
from rnnkit.data.rank_metrics import Protocol, evaluate_ranking, metrics_at, pessimistic_ranks
from rnnkit.errors import RnnkitError
from rnnkit.models.recommender import ranking_loss
from rnnkit.models.recommender_baselines import Cooccurrence, MostPopular


def _write(tmp_path, text: str, name: str = "log.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- metrics


def test_pessimistic_ranks_count_ties_against_the_target():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.2],    # target 0: best, rank 0
                           [0.5, 0.5, 0.5, 0.1],    # target 1: tied with two others, rank 2
                           [0.3, 0.8, 0.3, 0.9],    # target 2: two above, one tied, rank 3
                           [0.3, 0.8, 0.3, 0.9]])   # target 0, column 3 masked out: rank 2
    targets = torch.tensor([0, 1, 2, 0])
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[3, 3] = False
    assert pessimistic_ranks(scores, targets, mask).tolist() == [0, 2, 3, 2]


def test_metrics_from_a_hand_made_score_matrix():
    # ranks 0, 2, 3, 2 as above; at K = 3: hits 1, 1, 0, 1
    ranks = torch.tensor([0, 2, 3, 2])
    metrics = metrics_at(ranks, (1, 3))
    assert metrics["hr@1"] == pytest.approx(0.25)
    assert metrics["hr@3"] == pytest.approx(0.75)
    expected_ndcg = (1 + 2 / math.log2(4)) / 4  # 1/log2(2) + 2 × 1/log2(4), over 4 users
    assert metrics["ndcg@3"] == pytest.approx(expected_ndcg)
    assert metrics["mrr@3"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 4)
    assert metrics["ndcg@1"] == pytest.approx(0.25)


def test_full_protocol_leaves_seen_items_out_but_never_the_target():
    # 5 items; the scorer likes low indices; history [1, 2] is left out
    def scorer(histories):
        return torch.tensor([[0.0, 5, 4, 3, 2, 1]] * len(histories))

    cases = [Case([1, 2], 4), Case([1, 2], 1)]
    full = evaluate_ranking(scorer, cases, 5, Protocol("full", cutoffs=(1, 2)))
    # case 1: item 3 beats 4 → rank 1; case 2: target 1 in the history is kept → rank 0
    assert full["recall@1"] == pytest.approx(0.5) and full["recall@2"] == pytest.approx(1.0)
    seen = evaluate_ranking(scorer, cases, 5, Protocol("full", cutoffs=(1,), exclude_seen=False))
    assert seen["recall@1"] == pytest.approx(0.5)  # case 1 now rank 3; case 2 rank 0
    assert seen["mrr@1"] == pytest.approx(0.5)


def test_sampled_protocol_draws_distinct_unseen_negatives():
    from rnnkit.data.rank_metrics import sample_negatives

    cases = [Case([1, 2, 3], 4), Case([5], 6)]
    negatives = sample_negatives(cases, 50, 20, seed=3)
    for case, row in zip(cases, negatives.tolist(), strict=True):
        assert len(set(row)) == 20
        assert not set(row) & {*case.history, case.target}
    few = sample_negatives([Case([1, 2], 3)], 5, 100, seed=0)  # only items 4, 5 are left
    assert sorted(v for v in few[0].tolist() if v >= 0) == [4, 5]

    def constant(histories):  # every item tied: pessimistic rank = all candidates
        return torch.zeros(len(histories), 51)

    metrics = evaluate_ranking(constant, cases, 50, Protocol("sampled", 20, (10, 21)))
    assert metrics["hr@10"] == 0.0 and metrics["hr@21"] == 1.0


# ----------------------------------------------------------------------------- reading


def test_reader_header_csv_timestamps_and_id_round_trip(tmp_path):
    path = _write(tmp_path, "user_id,item_id,timestamp\nu1,b,20\nu1,a,10\nu2,c,5\n\nu1,c,30\n",
                  "log.csv")
    log = read_log(path)
    assert log.users == ["u1", "u2"]
    assert log.items == [["a", "b", "c"], ["c"]]  # sorted by time
    assert log.times == [[10, 20, 30], [5]]
    index = ItemIndex.build(log)
    again = ItemIndex.from_json(index.to_json())
    known, unknown = again.encode(["c", "zz", "a"])
    assert unknown == ["zz"]
    assert again.decode(known) == ["c", "a"]
    assert again.encode(again.decode([1, 2, 3]))[0] == [1, 2, 3]
    assert len(again) == 4  # three items and the padding row


def test_sequences_format_and_space_separated_pairs(tmp_path):
    log = read_log(_write(tmp_path, "x y z\n\nz x\n"), "sequences")
    assert log.items == [["x", "y", "z"], ["z", "x"]]
    pairs = read_log(_write(tmp_path, "1 6393\n1 17\n2 6393\n", "video.txt"))
    assert pairs.items == [["6393", "17"], ["6393"]] and pairs.times is None


@pytest.mark.parametrize("text, message", [
    ("u1\ta\nu1\ta\tb\tc\n", ":2: expected 2 fields like the first line, got 4"),
    ("u1 a 1\nu1 b 2\nu2 c\n", ":3: expected 3 fields like the first line, got 2"),
    ("u1 a b c\n", ":1: expected 2 fields (user item) or 3 (user item timestamp), got 4"),
    ("u1 a 10\nu1 b 2020-01-02\n", ":2: timestamp '2020-01-02' is not an integer"),
    ("", ":1: no interactions in the file (empty)"),
    ("\n\n", ":2: no interactions in the file (empty)"),
    ("user\titem\n", ":2: no interactions after the header line"),
])
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(RnnkitError) as caught:
        read_log(path)
    assert f"{path}{message}" in str(caught.value)


def test_leave_one_out_keeps_short_users_for_training(tmp_path):
    log = read_log(_write(tmp_path, "u1 a\nu1 b\nu1 c\nu1 d\nu2 a\nu3 b\nu3 c\n"))
    index = ItemIndex.build(log)
    parts = split(log, index)
    assert parts.train == [[1, 2], [1], [2, 3]]  # u2 (1 action), u3 (2) are all training
    assert [(c.history, c.target) for c in parts.valid] == [([1, 2], 3)]
    assert [(c.history, c.target) for c in parts.test] == [([1, 2, 3], 4)]
    assert parts.skipped == 2
    index.count(parts.train)
    assert index.counts == [2, 2, 1, 0]


def test_time_split_uses_global_cut_offs(tmp_path):
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 8), ("u1", "d", 9),
            ("u2", "a", 3), ("u2", "e", 10), ("u3", "b", 4), ("u3", "c", 5),
            ("u4", "d", 6), ("u4", "e", 7)]
    log = read_log(_write(tmp_path, "".join(f"{u} {i} {t}\n" for u, i, t in rows)))
    index = ItemIndex.build(log)
    parts = split(log, index, "time", valid_fraction=0.2, test_fraction=0.2)
    # 10 stamps: validation from t=7, test from t=9
    a, b, c, d, e = (index.encode([x])[0][0] for x in "abcde")
    assert parts.train == [[a, b], [a], [b, c], [d]]
    assert [(x.history, x.target) for x in parts.valid] == [([a, b], c), ([d], e)]
    assert [(x.history, x.target) for x in parts.test] == [([a, b, c], d), ([a], e)]
    assert parts.skipped == 2


def test_time_split_needs_timestamps(tmp_path):
    path = _write(tmp_path, "u1 a\nu1 b\n")
    log = read_log(path)
    with pytest.raises(RnnkitError, match="has no timestamp column"):
        split(log, ItemIndex.build(log), "time")


# ----------------------------------------------------------------------------- losses, baselines


def test_sampled_ce_matches_a_hand_computed_softmax():
    weights = torch.randn(6, 3)
    queries = torch.randn(2, 3)
    targets = torch.tensor([1, 4])
    negatives = torch.tensor([2, 4, 5])  # item 4 is row 2's target: masked out there
    loss = ranking_loss(queries, targets, weights, "ce", negatives)
    expected = 0.0
    for row in range(2):
        pos = queries[row] @ weights[targets[row]]
        negs = [queries[row] @ weights[n] for n in negatives.tolist() if n != targets[row]]
        expected += -(pos - torch.logsumexp(torch.stack([pos, *negs]), 0))
    assert loss.item() == pytest.approx(expected.item() / 2, rel=1e-5)
    for kind in ("bpr-max", "top1-max"):
        value = ranking_loss(queries, targets, weights, kind, negatives)
        assert torch.isfinite(value) and value.item() > 0
    with pytest.raises(ValueError, match="needs sampled negatives"):
        ranking_loss(queries, targets, weights, "bpr-max", None)


def test_baselines_popularity_and_transitions():
    train = [[1, 2, 3], [1, 2], [2, 3]]
    counts = [2, 3, 2]
    popular = MostPopular(counts)([[1], [3]])
    assert popular[:, 1:].tolist() == [[2.0, 3.0, 2.0]] * 2
    cooc = Cooccurrence(train, counts)([[3, 1], [2], [3]])
    assert cooc[0].argmax().item() == 2  # 1 → 2 twice
    assert cooc[1].argmax().item() == 3  # 2 → 3 twice
    assert cooc[2].argmax().item() == 2  # nothing follows 3: popularity orders
    assert cooc[2, 1:].max() < 1
