"The Bayes predictor against brute-force enumeration, the floor identity, and the excess of a model on both vocabularies."
import itertools
import math

import numpy as np
import pytest
import torch

from zo_gpt.config import fixed_batches, make_config
from zo_gpt.data import (bayes_entropy, bayes_next, distinct_blocks, every_block, kl_div, ladder_excess, ladder_next,
                         reference_excess, stream_floor)
from zo_gpt.evaluation import evaluate, measure
from zo_gpt.model import GPT
from zo_gpt.tokens import DataConfig, code_lookup, load_dataset, prepare


def enumerate_posteriors(p, n, T):
    "Every context of up to T tokens with its exact next-token distribution, from all word sequences and block starts."
    joint = {}
    for start in range(n + 1):                              # the block's first token's position in its sequence
        m = -(-(start + T + 1) // (n + 1))                  # sequences the block touches
        for words in itertools.product((0, 1), repeat=m * n):
            prob = math.prod(p if w else 1 - p for w in words) / (n + 1)
            codes = []
            for j in range(m):
                w = words[j * n:(j + 1) * n]
                codes += [w[0]] + [2 + v for v in w[1:]] + [4]
            codes = codes[start:start + T + 1]
            for t in range(T):
                joint.setdefault(tuple(codes[:t + 1]), np.zeros(5))[codes[t + 1]] += prob
    return {ctx: d / d.sum() for ctx, d in joint.items()}


@pytest.mark.parametrize("p, n, T", [(0.3, 3, 2), (0.3, 3, 5), (0.7, 2, 7), (0.6, 1, 4), (0.4, 4, 3), (0.4, 4, 4),
                                     (0.55, 5, 9)])
def test_bayes_next_equals_brute_force(p, n, T):
    exact = enumerate_posteriors(p, n, T)
    assert len(exact) > 10
    for ctx, q in exact.items():
        np.testing.assert_allclose(bayes_next(np.array(ctx)[None], p, n)[0, -1], q, atol=1e-12, err_msg=str(ctx))


@pytest.mark.parametrize("p, n, T", [(2 / 3, 1000, 256), (2 / 3, 1000, 512), (2 / 3, 1000, 2500), (0.3, 5, 3),
                                     (0.3, 5, 17), (0.8, 1, 4), (0.5, 40, 40), (0.5, 40, 41)])
def test_the_floor_is_the_bayes_predictors_expected_loss(p, n, T):
    assert bayes_entropy(p, n, T) == pytest.approx(stream_floor(p, n, T), abs=1e-9)


def test_reference_excess_known_values():
    refs = reference_excess(2 / 3, 1000, 256)
    assert refs["uniform over the 5 tokens"] == pytest.approx(math.log(5) - stream_floor(2 / 3, 1000, 256), abs=1e-12)
    kl_half = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)              # KL(Bernoulli(2/3) || Bernoulli(1/2))
    assert refs["knows where sequences end, not p"] == pytest.approx(kl_half * 1000 / 1001, rel=1e-9)
    assert 1e-4 < refs["knows p, not where sequences end"] < 2e-4
    assert kl_div(np.array([0.5, 0.5, 0, 0, 0]), np.log([0.5, 0.5, 1e-9, 1e-9, 1e-9])) == pytest.approx(0, abs=1e-12)
    assert every_block(3, 5).shape == (4, 6)


@pytest.mark.parametrize("n, T", [(1, 4), (5, 3), (5, 17), (60, 32), (60, 59), (60, 60), (60, 61), (1000, 256), (2, 1)])
def test_the_distinct_blocks_give_the_means_over_every_block(n, T):
    "distinct_blocks stands one words-only block for all of them: every mean over the seq_len + 1 block starts is unchanged."
    blocks, w = distinct_blocks(n, T)
    every = every_block(n, T)
    assert w.sum() == n + 1 and {tuple(b) for b in blocks} == {tuple(b) for b in every} and len(blocks) <= T + 3
    rungs = ladder_next(every[:, :-1], 2 / 3, n)
    mean = {k: float(kl_div(rungs["Bayes"], np.log(np.where(q > 0, q, 1e-300))).mean()) for k, q in rungs.items()}
    assert ladder_excess(2 / 3, n, T) == pytest.approx(mean, abs=1e-15)


def test_sequences_of_ten_million_words_have_their_floor_and_references():
    "D253: a dataset of two sequences of 10,000,000 words; the references once needed 106 GB, one block per start."
    assert bayes_entropy(2 / 3, 10_000_000, 32) == pytest.approx(stream_floor(2 / 3, 10_000_000, 32), abs=1e-12)
    refs = reference_excess(2 / 3, 10_000_000, 32)
    assert refs["knows where sequences end, not p"] == pytest.approx((2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)) * 1e7 / (1e7 + 1), rel=1e-9)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    prepare(DataConfig(n_seq=2000, seq_len=100, seed=5, vocab="compact"), path, verbose=False)
    return load_dataset(path)


def test_bayes_loss_on_a_generated_stream_is_the_floor(stream):
    codes, n, T = code_lookup(stream.meta)[np.asarray(stream.train)], 100, 64
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(codes) - T - 1, 2000)
    rows = codes[starts[:, None] + np.arange(T + 1)]
    q = bayes_next(rows[:, :-1], 2 / 3, n)
    per_block = -np.log(np.take_along_axis(q, rows[:, 1:, None], -1)[..., 0]).mean(1)
    se = per_block.std(ddof=1) / math.sqrt(len(per_block))
    assert abs(per_block.mean() - stream_floor(2 / 3, n, T)) < 4 * se


@pytest.mark.parametrize("vocab", ["compact", "gpt2"])
def test_excess_is_the_expected_loss_minus_the_floor_on_both_vocabularies(request, vocab):
    # 200 sequences of 60 words, with compact or GPT-2 ids
    ds = load_dataset(request.getfixturevalue({"compact": "tiny_data", "gpt2": "tiny_gpt2_data"}[vocab]))
    cfg = make_config("cpu", {"vocab": vocab, "block_size": 32, "n_embd": 16, "batch_size": 32, "eval_batches": 4})
    torch.manual_seed(0)
    model = GPT(cfg.model_config())
    batches = fixed_batches(ds.val, cfg, torch.device("cpu"))
    r = evaluate(model, batches, ds.meta)
    m = measure(model, *batches[0], ds.meta)
    assert (m["kl"] >= -1e-12).all() and m["part"].min() >= 0 and m["part"].max() <= 4
    # Untrained: near uniform over the whole vocabulary, so the excess is near ln(V) - floor: with GPT-2's ids,
    # the mass on the 50,299 ids the stream never uses counts against the model.
    assert r["kl"] == pytest.approx(math.log(cfg.vocab_size) - stream_floor(2 / 3, 60, 32), abs=0.15)
    assert abs(r["loss"] - r["bayes"] - r["kl"]) < 5 * r["gap_se"]
    assert sum(r["kl_parts"].values()) == pytest.approx(r["kl"], rel=1e-9)
