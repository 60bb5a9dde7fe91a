"""The final evaluation's blocks: every alignment to the sequences equally often, and a standard error that matches the
spread of the same measurement repeated on other stretches of data."""
import math

import numpy as np
import pytest
import torch

from zo_gpt.data import bayes_next
from zo_gpt.config import blocks_at
from zo_gpt.evaluation import alignment_blocks, evaluate, evaluate_split
from zo_gpt.tokens import DataConfig, code_lookup, load_dataset, prepare


@pytest.mark.parametrize("T, period, n_tokens", [(256, 1001, 600_000), (512, 1001, 1_001_000), (64, 256, 100_000),
                                                 (77, 1001, 200_000), (8, 21, 1000), (2500, 1001, 10**6), (32, 1001, 10_000)])
def test_alignment_blocks_visit_every_alignment_equally(T, period, n_tokens):
    starts, rounds = alignment_blocks(n_tokens, T, period)
    assert len(starts) >= 2 and starts[-1] + T + 1 <= n_tokens   # every block has its targets
    assert (np.diff(starts) >= T).all()                          # and blocks never overlap
    stride = int(starts[1])
    assert math.gcd(stride, period) == 1 and stride - T < period
    fitting = (n_tokens - 1 - T) // stride + 1
    assert rounds == fitting // period
    if rounds:
        assert (np.bincount(starts % period, minlength=period) == rounds).all()
    else:
        assert len(starts) == fitting


class StandIn:
    """A model from a function of the context: the Bayes predictor mixed with a guess that the last piece repeats (so the
    excess depends on the words drawn), and badly wrong after an end-of-text token in a block's first two positions
    (so it depends on where blocks start), like a model that has not learned that case."""
    def __init__(self, meta): self.meta, self.n = meta, meta["config"]["seq_len"]
    def log_probs(self, idx, ids):
        codes = code_lookup(self.meta)[idx.numpy()]
        q = 0.9 * bayes_next(codes, self.meta["config"]["p"], self.n) + 0.1 * np.eye(5)[codes]
        bad = (codes == 4) & (np.arange(codes.shape[-1]) < 2)
        q[bad] = np.array([1e-4, 1e-4, 0.5, 0.5, 1e-4])
        with np.errstate(divide="ignore"): return torch.from_numpy(np.log(q / q.sum(-1, keepdims=True)))


def test_the_standard_error_of_rounds_matches_the_spread_of_repeats(tmp_path):
    prepare(DataConfig(n_seq=6000, seq_len=20, seed=3, vocab="compact"), tmp_path, verbose=False)
    ds = load_dataset(tmp_path)
    T, period, model, cpu = 8, 21, StandIn(ds.meta), torch.device("cpu")
    span = 2 * period * T                                        # two rounds: stride 8, 21 blocks a round
    stretches = [ds.val[i * span:(i + 1) * span + 1] for i in range(len(ds.val) // span - 1)]
    assert len(stretches) >= 30
    rounds = [evaluate_split(model, s, ds.meta, T, device=cpu) for s in stretches]
    assert {r["rounds"] for r in rounds} == {2}
    spread = np.std([r["kl"] for r in rounds], ddof=1)
    claimed = math.sqrt(np.mean([r["kl_se"] ** 2 for r in rounds]))
    assert 0.6 < spread / claimed < 1.6, (spread, claimed)
    # The same blocks taken as independent: an error that counts the luck of alignment, which the rounds removed.
    blocks = [blocks_at(s, alignment_blocks(len(s), T, period)[0], T) for s in stretches]
    independent = [evaluate(model, [(b[:, :-1], b[:, 1:])], ds.meta)["kl_se"] for b in blocks]
    assert np.mean(independent) > 2 * spread, (np.mean(independent), spread)
