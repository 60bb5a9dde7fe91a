import math

import numpy as np
import pytest

from zo_gpt.data import entropy, floor_parts, generate, iter_words, stream_floor
from zo_gpt.helpers import ConfigError


def test_generate_shape_values_and_seed():
    w = generate(50, 30, 0.3, seed=4)
    assert w.shape == (50, 30) and w.dtype == np.uint8
    assert set(np.unique(w)) <= {0, 1}
    assert np.array_equal(w, generate(50, 30, 0.3, seed=4))
    assert not np.array_equal(w, generate(50, 30, 0.3, seed=5))


def test_chunks_do_not_change_the_words():
    whole = generate(23, 17, 2 / 3, seed=9)
    for chunk in (1, 5, 23, 100):
        assert np.array_equal(np.concatenate(list(iter_words(23, 17, 2 / 3, seed=9, chunk=chunk))), whole)


@pytest.mark.parametrize("p", [0.05, 0.5, 2 / 3, 0.97])
def test_frequency_matches_p_within_its_standard_error(p):
    w = generate(400, 500, p, seed=1)
    se = math.sqrt(p * (1 - p) / w.size)
    assert abs(w.mean() - p) < 4 * se


@pytest.mark.parametrize("call, name", [
    (lambda: generate(0, 10), "n_seq"),
    (lambda: generate(10, 0), "seq_len"),
    (lambda: generate(-1, 10), "n_seq"),
    (lambda: generate(2.5, 10), "n_seq"),
    (lambda: generate(10, 10, p=0), "p must be"),
    (lambda: generate(10, 10, p=1), "p must be"),
    (lambda: generate(10, 10, p=-0.2), "p must be"),
    (lambda: generate(10, 10, p=float("nan")), "p must be"),
    (lambda: generate(10, 10, p="0.5"), "p must be"),
    (lambda: generate(10, 10, seed=-1), "seed"),
    (lambda: entropy(1.0), "p must be"),
    (lambda: stream_floor(0.5, 0, 8), "seq_len"),
    (lambda: stream_floor(0.5, 10, 0), "block_size"),
    (lambda: stream_floor(1.5, 10, 8), "p must be"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ConfigError, match=name):
        call()


def test_entropy():
    assert entropy(2 / 3) == pytest.approx(0.636514168, abs=1e-9)
    assert entropy(2 / 3, bits=True) == pytest.approx(0.918295834, abs=1e-9)
    assert entropy(0.5, bits=True) == pytest.approx(1.0)
    assert entropy(0.2) == pytest.approx(entropy(0.8))


def test_floor_by_hand_for_three_words():
    # n = 3 words, contexts c = 1, 2:
    # c=1: F,W cost H; the second word pays H + ln 2 and the end-of-text ln 2.  c=2: every token is known: 3H.
    h = entropy(2 / 3)
    assert stream_floor(2 / 3, 3, 2) == pytest.approx((3 * h + math.log(2)) / 4, abs=1e-12)
    parts = floor_parts(2 / 3, 3, 2)
    assert parts["first"] == pytest.approx(h)
    assert parts["word"] == pytest.approx(h + math.log(2) / 4)
    assert parts["eot"] == pytest.approx(math.log(2) / 2)


def test_floor_values_and_limits():
    h = entropy(2 / 3)
    assert stream_floor(2 / 3, 1000, 256) == pytest.approx(0.64364, abs=5e-6)
    assert stream_floor(2 / 3, 1000, 512) == pytest.approx(0.64346, abs=5e-6)
    assert stream_floor(2 / 3, 1, 16) == pytest.approx(h / 2, abs=1e-12)
    assert stream_floor(2 / 3, 10, 100_000) == pytest.approx(10 * h / 11, abs=1e-4)
    floors = [stream_floor(2 / 3, 100, T) for T in range(1, 400)]
    assert all(a >= b for a, b in zip(floors, floors[1:]))  # more context never hurts
    assert floors[0] > h  # a short context pays for the unknown end of the sequence
