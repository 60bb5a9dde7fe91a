import json
import subprocess
import sys
from pathlib import Path

import pytest

from zo_gpt.model import GPTConfig, flops_per_token
from zo_gpt.profiling import CATEGORIES, categorize, profile_config, profile_steps
from zo_gpt.tokens import DataConfig, prepare


@pytest.mark.parametrize("name, ranges, category", [
    ("aten::mm", (), "matrix multiplies"), ("MmBackward0", (), "matrix multiplies"),
    ("aten::addmm", ("loss", "lm_head"), "matrix multiplies"), ("aten::exp_", ("loss", "lm_head"), "softmax / cross-entropy"),
    ("aten::_log_softmax", (), "softmax / cross-entropy"), ("aten::nll_loss_backward", (), "softmax / cross-entropy"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", ("forward", "attention"), "attention"),
    ("aten::copy_", (), "copies and casts"), ("aten::_to_copy", (), "copies and casts"),
    ("aten::gelu", ("mlp",), "elementwise and activations"), ("aten::add", (), "elementwise and activations"),
    ("aten::native_layer_norm", (), "normalisation"), ("aten::_foreach_addcdiv_", ("optimizer",), "optimizer"),
    ("aten::index", ("data",), "data loading / host"), ("ProfilerStep*", (), "data loading / host"),
    ("flash_fwd_kernel", (), "attention"), ("Memcpy HtoD (Pageable -> Device)", (), "copies and casts"),
    ("void at::native::vectorized_elementwise_kernel<4>", (), "elementwise and activations"),
    ("mystery_op", (), "other"),
])
def test_categorize(name, ranges, category):
    assert categorize(name, frozenset(ranges)) == category
    assert category in CATEGORIES


def test_profile_accounts_for_the_whole_step(tmp_path):
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="gpt2"), tmp_path / "d", verbose=False)
    cfg = profile_config("cpu", {"data_dir": str(tmp_path / "d"), "n_embd": 32, "n_head": 2, "block_size": 32, "batch_size": 2})
    r = profile_steps(cfg, active=2, trace=tmp_path / "t.json")
    assert sum(r.categories.values()) == pytest.approx(r.profiled_step_ms, rel=0.01)
    assert r.categories["matrix multiplies"] > 0 and r.categories["softmax / cross-entropy"] > 0
    assert r.memory["cpu_peak_by_phase"]["forward"] > 0 and 0 < r.mfu < 1.5
    assert json.loads((tmp_path / "t.json").read_text())


def test_cli_profile_writes_its_outputs(tmp_path):
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="compact"), tmp_path / "d", verbose=False)
    cli = Path(sys.executable).parent / "zo-gpt"
    r = subprocess.run([str(cli), "profile", "--out", str(tmp_path / "p"), f"--data_dir={tmp_path / 'd'}", "--vocab=compact",
                        "--block_size=32", "--steps=1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in ("table.txt", "ops.csv", "categories.png", "trace.json"): assert (tmp_path / "p" / f).stat().st_size > 0
    assert "matrix multiplies" in (tmp_path / "p" / "table.txt").read_text() and "MFU" in r.stdout
    r = subprocess.run([str(cli), "profile", "--out", str(tmp_path / "q"), "--n_embed=3"], capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean 'n_embd'" in r.stderr


def test_mfu_counts_the_work_the_profiled_step_does(tmp_path):
    "grad_accum micro-batches per profiled step, and FLOPs counted for them: the MFU no longer grows with grad_accum."
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="compact"), tmp_path / "d", verbose=False)
    runs = {}
    for k in (1, 4):
        cfg = profile_config("cpu", {"data_dir": str(tmp_path / "d"), "vocab": "compact", "n_embd": 32, "n_head": 2,
                                     "block_size": 64, "batch_size": 4, "grad_accum": k})
        runs[k] = profile_steps(cfg, active=2)
    calls = {k: {r["name"]: r["calls"] for r in runs[k].ops} for k in runs}
    assert calls[4]["aten::embedding"] == 4 * calls[1]["aten::embedding"] == 8       # 4 micro-batches, token and position
    opt = {k: sum(r["calls"] for r in runs[k].ops if r["category"] == "optimizer") for k in runs}
    assert opt[4] == opt[1] > 0                                                      # one optimizer step either way
    assert runs[4].flops_per_step == 4 * runs[1].flops_per_step
    fl = flops_per_token(GPTConfig(n_embd=32, n_head=2, block_size=64, vocab_size=5))
    assert runs[1].flops_per_step == pytest.approx(3 * 4 * 64 * (2 * 32 * 5 + 2 * 12 * 32 * 32 + 4 * 32 * 64))
    assert sum(fl.values()) == 2 * 32 * 5 + 2 * 12 * 32 * 32 + 4 * 32 * 64   # lm_head, 12 C^2 weights, the whole T x T scores
