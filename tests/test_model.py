import math

import pytest
import torch
from torch.nn import functional as F

from zo_gpt.helpers import ConfigError, get_device
from zo_gpt.losses import LOSSES, compare_losses, loss_methods, loss_table
from zo_gpt.model import GPT, GPTConfig, autocast, ce_chunk_rows, flops_per_token, linear_cross_entropy, param_counts


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("n, c, v, chunk", [(300, 16, 97, 37), (64, 8, 50, 1), (33, 12, 7, 1000), (128, 32, 2048, 0)])
def test_fused_loss_and_gradients_match_float64_reference(n, c, v, chunk):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, c, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(v, c, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)
    ref = F.cross_entropy(x @ w.t(), t)
    gx, gw = torch.autograd.grad(ref, (x, w))
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    loss = linear_cross_entropy(x32, w32, t, chunk)
    fx, fw = torch.autograd.grad(loss * 3.0, (x32, w32))  # a non-unit upstream gradient
    assert abs(loss.item() - ref.item()) / ref.item() < 1e-5
    assert rel(fx, 3 * gx) < 1e-5 and rel(fw, 3 * gw) < 1e-5


def test_fused_loss_without_grad_and_in_bfloat16():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(256, 32, generator=g), torch.randn(500, 32, generator=g) * 0.1
    t = torch.randint(0, 500, (256,), generator=g)
    ref = F.cross_entropy(x @ w.t(), t).item()
    with torch.no_grad():
        assert linear_cross_entropy(x, w, t, 100).item() == pytest.approx(ref, rel=1e-6)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    with autocast(torch.device("cpu"), "bfloat16"):
        loss = linear_cross_entropy(xr, wr, t, 100)
    loss.backward()
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(ref, rel=2e-2)
    assert xr.grad.dtype == torch.float32 and torch.isfinite(wr.grad).all()


def model(vocab=5, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"n_embd": 32, "n_head": 2, "block_size": 16, "vocab_size": vocab, **kw}))


def test_shapes_and_initial_loss():
    for vocab in (5, 50304):
        m = model(vocab, n_embd=64, n_head=4)
        x, y = torch.randint(0, vocab, (3, 16)), torch.randint(0, vocab, (3, 16))
        assert m(x).shape == (3, 16, vocab)
        assert m(x, y).item() == pytest.approx(math.log(vocab), abs=0.15)  # targets unrelated to the inputs


def test_causality():
    m = model().eval()
    a = torch.randint(0, 5, (2, 16)); b = a.clone(); b[:, 9:] = (b[:, 9:] + 1) % 5
    assert torch.allclose(m(a)[:, :9], m(b)[:, :9], atol=1e-6)
    assert not torch.allclose(m(a)[:, 9:], m(b)[:, 9:], atol=1e-4)


def test_fused_model_equals_plain_model():
    m = model(1000)
    x, y = torch.randint(0, 1000, (4, 16)), torch.randint(0, 1000, (4, 16))
    out = {}
    for fused in (True, False):
        m.config.fused_ce = fused; m.zero_grad()
        loss = m(x, y); loss.backward()
        out[fused] = loss.item(), [p.grad.clone() for p in m.parameters()]
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-6)
    assert all(rel(a, b.double()) < 1e-5 for a, b in zip(out[True][1], out[False][1]))
    assert m.token_losses(x, y).mean().item() == pytest.approx(out[True][0], rel=1e-5)
    assert torch.allclose(m.log_probs(x, list(range(1000))).exp().sum(-1), torch.ones(4, 16), atol=1e-5)


def test_tiny_model_overfits_one_batch():
    m = model()
    x, y = torch.randint(0, 5, (4, 16)), torch.randint(0, 5, (4, 16))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(150):
        loss = m(x, y); opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.1


def test_counts_and_flops():
    cfg = GPTConfig(n_embd=128, block_size=256, vocab_size=50304)
    m = GPT(cfg)
    counts = param_counts(m)
    assert sum(counts.values()) == sum(p.numel() for p in m.parameters())
    assert counts["token embedding = head"] == 50304 * 128
    fl = flops_per_token(cfg)
    assert fl["lm_head"] / sum(fl.values()) == pytest.approx(2 * 128 * 50304 / (2 * 128 * 50304 + 2 * 12 * 128**2 + 4 * 128 * 256))  # 0.961
    fl5 = flops_per_token(GPTConfig(n_embd=128, block_size=256, vocab_size=5))
    assert fl5["lm_head"] / sum(fl5.values()) < 0.01


@pytest.mark.parametrize("kw, needle", [
    (dict(n_embd=100, n_head=3), "multiple of n_head"), (dict(n_layer=0), "n_layer"), (dict(vocab_size=-1), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_model_config(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        GPTConfig(**kw)


def test_context_longer_than_block_is_refused():
    with pytest.raises(ConfigError, match="longer than the model's block_size=16"):
        model()(torch.zeros(1, 17, dtype=torch.long))


def test_device_and_dtype_errors():
    assert get_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ConfigError, match="not a device"):
        get_device("gpu0")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        autocast(torch.device("cpu"), "fp8")


def test_chunks_are_sized_by_the_devices_memory_budget():
    assert ce_chunk_rows(50304) == 166 and ce_chunk_rows(50304, 100) == 100           # 32 MiB of logits on a CPU
    rows = ce_chunk_rows(50304, 0, "cuda")
    assert 256 << 20 <= rows * 50304 * 4 <= 512 << 20 and -(-64 * 512 // rows) == 13     # the a100 preset: 13 chunks, not 197


def test_loss_comparison_measures_time_memory_and_agreement():
    rows = compare_losses(4096, 16, 4096, device="cpu", repeats=1)
    assert [r["method"] for r in rows] == [label for label, _ in loss_methods()]   # torch's own too, from torch 2.13 on
    plain, chunked = rows[0], rows[1:]
    logits_mib = 4096 * 4096 * 4 / 2**20                                                 # 64 MiB of float32 logits
    assert plain["peak_mib"] >= 2 * logits_mib                                           # the logits and their gradient
    assert all(r["peak_mib"] < plain["peak_mib"] / 4 for r in chunked)
    assert all(r["ms"] > 0 for r in rows) and plain["loss_diff"] == plain["grad_diff"] == 0
    assert all(r["grad_diff"] < 1e-5 and r["loss_diff"] < 1e-5 for r in chunked)
    assert loss_table(rows).splitlines()[1].startswith(LOSSES[0][0])


def test_loss_comparison_on_a_torch_without_its_own_chunked_loss(monkeypatch):
    monkeypatch.delattr(torch.nn.functional, "linear_cross_entropy", raising=False)   # as in torch 2.11
    assert loss_methods() == LOSSES[:2]
    rows = compare_losses(256, 8, 64, device="cpu", repeats=1)
    assert [r["method"] for r in rows] == [label for label, _ in LOSSES[:2]] and rows[1]["grad_diff"] < 1e-5
    assert "has no chunked linear_cross_entropy" in loss_table(rows).splitlines()[-1]


def test_each_way_of_the_loss_is_the_function_listed_with_it():
    "The comparison runs the functions `LOSSES` pairs with its labels: each gives the float64 cross-entropy."
    g = torch.Generator().manual_seed(1)
    x, w, t = torch.randn(200, 8, generator=g), torch.randn(31, 8, generator=g), torch.randint(0, 31, (200,), generator=g)
    ref = F.cross_entropy(x.double() @ w.double().t(), t).item()
    assert [label.split(":")[0] for label, _ in LOSSES] == ["plain", "ours", "torch"]
    assert LOSSES[1][1] is linear_cross_entropy
    for label, fn in loss_methods():
        assert fn(x, w, t).item() == pytest.approx(ref, rel=1e-5), label


def test_a_temperature_near_zero_samples_the_likeliest_token():
    "G211: logits over 1e-40 overflow float32; the likeliest token is taken, as at temperature 0, not a NaN from torch.multinomial."
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).eval()
    x = torch.tensor([[4, 1, 2, 3]])
    greedy = m.generate(x, 6, temperature=0)
    for t in (1e-40, 5e-324): assert torch.equal(m.generate(x, 6, temperature=t), greedy)


def test_attention_weights_of_a_bfloat16_model_are_float32():
    "G217: explain and mechanism turn them into numpy arrays, and numpy has no bfloat16."
    from zo_gpt.evaluation import attention_weights
    m = GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).eval().to(torch.bfloat16)
    w = attention_weights(m, torch.tensor([[4, 1, 2, 3]]))
    assert w.dtype == torch.float32 and w.numpy().shape == (1, 2, 4, 4)
