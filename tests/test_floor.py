"The exact floor against a Monte-Carlo estimate of the true process's loss on generated token streams."
import pytest

from zo_gpt.data import entropy, stream_floor
from zo_gpt.tokens import DataConfig, load_dataset, mc_floor, prepare


@pytest.mark.parametrize("seq_len, block_size, n_seq, n_blocks, vocab", [
    (3, 8, 4_000, 2_000, "gpt2"),        # block longer than a sequence: most end-of-text tokens are certain
    (20, 16, 2_000, 2_000, "compact"),   # block shorter than a sequence, compact ids
    (50, 128, 2_000, 1_000, "gpt2"),
    (1_000, 256, 1_000, 3_000, "gpt2"),  # the CPU preset's setting
])
def test_floor_matches_simulated_loss_of_the_true_process(tmp_path, seq_len, block_size, n_seq, n_blocks, vocab):
    p = 2 / 3
    prepare(DataConfig(n_seq=n_seq, seq_len=seq_len, p=p, vocab=vocab), tmp_path, verbose=False)
    mc, se = mc_floor(load_dataset(tmp_path), block_size, n_blocks, split="train", seed=1)
    floor = stream_floor(p, seq_len, block_size)
    assert abs(mc - floor) < 4 * se, (mc, se, floor)
    assert abs(floor - entropy(p)) > 8 * se  # the check can tell the floor from the source entropy
