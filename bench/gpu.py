"""The a100 preset on a CUDA GPU: step time, tokens per second, peak GPU memory, loss and excess against the floor; the
same steps with torch.compile (its compile time apart); the head's loss three ways (plain, ours chunked, torch's
linear_cross_entropy chunked) at the preset's size, in bfloat16 and float32: time, peak memory, agreement; and the
preset's profile: categories, MFU, and its event table (OUT_DIR/profile/events.json, the GPU fixture for tests/).

Run where a GPU is: `python bench/gpu.py DATA_DIR OUT_DIR` (the dataset is made in DATA_DIR if missing).
"""
import sys
import time
from pathlib import Path

import torch

from zo_gpt.config import make_config
from zo_gpt.evaluation import excess_text
from zo_gpt.model import compare_losses, loss_table
from zo_gpt.profiling import category_table, flops_table, profile_config, profile_steps
from zo_gpt.train import Callback, fit


class Clock(Callback):
    "Wall time of each step, after the GPU has finished it."
    def __init__(self): self.t = []
    def on_step(self, state, record):
        torch.cuda.synchronize(); self.t.append(time.perf_counter())


def timed_fit(cfg):
    "The run's history, wall time, median step and the first step's time (a compiled run compiles in it)."
    clock = Clock()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    h = fit(cfg, callbacks=[clock])
    wall = time.perf_counter() - t0
    steps = sorted(b - a for a, b in zip(clock.t, clock.t[1:]))
    return h, wall, steps[len(steps) // 2], clock.t[0] - t0


def main(data_dir, out_dir):
    if not torch.cuda.is_available(): sys.exit("bench/gpu.py: no CUDA device here")
    cfg = make_config("a100", {"data_dir": data_dir, "out_dir": out_dir})
    h, wall, med, _ = timed_fit(cfg)
    tokens = cfg.batch_size * cfg.block_size * cfg.grad_accum
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"a100 preset: {cfg.max_iters} steps in {wall:.1f} s (final evaluation included); median step {med * 1e3:.1f} ms, "
          f"{tokens / med:,.0f} tokens/s; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    for r in h.val: print(f"  step {r['iter']:4d}  val loss {r['loss']:.4f} +- {r['se']:.4f}  {excess_text(r)}  "
                          f"P(eot) in view {r['p_eot_in_view']:.1e}")
    f = h.final
    print(f"final, {f['scored']:,} tokens: loss {f['loss']:.5f} +- {f['se']:.5f}, floor {h.floor:.5f}, {excess_text(f)}")
    first = next((r["iter"] for r in h.val if r["kl"] <= 1e-3), None)
    print(f"first evaluation with excess <= 1e-3: step {first}")
    c = make_config("a100", {"data_dir": data_dir, "out_dir": f"{out_dir}/compiled", "compile": True, "max_iters": 60,
                             "final_eval": False})
    _, _, med_c, first = timed_fit(c)
    print(f"torch.compile(dynamic=False): first step {first:.1f} s (compiling), median step {med_c * 1e3:.1f} ms "
          f"({med / med_c:.2f}x the uncompiled step)")
    rows = cfg.batch_size * cfg.block_size
    for dtype in ("bfloat16", "float32"):
        print(f"\nthe head's loss, {rows:,} rows x n_embd {cfg.n_embd} x vocab {cfg.vocab_size:,}, {dtype}, forward and backward:")
        print(loss_table(compare_losses(rows, cfg.n_embd, cfg.vocab_size, device="cuda", dtype=dtype, repeats=5)))
    events = Path(out_dir) / "profile" / "events.json"
    r = profile_steps(profile_config("a100", {"data_dir": data_dir}), active=3, table=events)
    print(f"\nprofile of the a100 preset, {r.step_ms:.1f} ms a step unprofiled:\n{category_table({'a100 preset': r})}\n{flops_table(r)}")
    print(f"event table: {events}, {events.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:3])
