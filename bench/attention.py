"""How much of the cpu preset's training step is attention, and how that share depends on the head size.

The cpu preset has 8 heads of 4 dimensions (width 32). torch's CPU attention kernel (scaled_dot_product_attention,
flash) works through each head's block of queries with small matrix products whose inner size is the head size, so
at 4 dimensions it is bound by the number of rows and heads, not by arithmetic. This prints, for the preset's batch
(16 x 256) at width 32 with 8, 4 and 2 heads: the attention kernel's forward and backward, and the whole training
step (forward, backward, clipping, AdamW), at 1 and 2 threads, as medians of 15 after 3 warm-up passes. Each setting
runs in a fresh process (the thread count is fixed when torch starts)."""
import json
import os
import statistics
import subprocess
import sys
import time


def worker(n_head, threads):
    import zo_gpt  # noqa: F401  (before torch: OpenMP's passive wait, as every run has it)
    import torch
    import torch.nn.functional as F
    from zo_gpt.config import make_config
    from zo_gpt.model import GPT, make_optimizer, precision
    from zo_gpt.train import train_step
    torch.set_num_threads(threads)
    cfg = make_config("cpu", {"n_head": n_head})
    B, T, H, D = cfg.batch_size, cfg.block_size, n_head, cfg.n_embd // n_head
    torch.manual_seed(0)
    model = GPT(cfg.model_config())
    opt = make_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, torch.device("cpu"), False)
    x = torch.randint(0, cfg.vocab_size, (B, T)); y = torch.randint(0, cfg.vocab_size, (B, T))
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
    def timed(fn, n=15):
        for _ in range(3): fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    attention = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with precision(torch.device("cpu"), flush_denormal=cfg.flush_denormal):
        fwd = timed(attention)
        both = timed(lambda: attention().sum().backward())
        step = timed(lambda: train_step(model, opt, cfg, lambda: (x, y), 1e-4))
    print(json.dumps({"fwd": fwd, "fwd_bwd": both, "step": step, "D": D}))


def main():
    print(f"attention in the cpu preset's step (batch 16 x block 256, width 32), {os.cpu_count()} CPUs; ms, medians of 15")
    print(f"{'heads x size':>13} {'threads':>8} {'attention fwd':>14} {'fwd + bwd':>10} {'whole step':>11} {'attention share':>16}")
    for n_head in (8, 4, 2):
        for threads in (1, 2):
            r = subprocess.run([sys.executable, __file__, "--worker", str(n_head), str(threads)], capture_output=True, text=True)
            if r.returncode: raise SystemExit(r.stderr)
            m = json.loads(r.stdout.strip().splitlines()[-1])
            size = f"{n_head} x {m['D']}"
            print(f"{size:>13} {threads:>8} {m['fwd']:>14.1f} {m['fwd_bwd']:>10.1f} {m['step']:>11.1f} "
                  f"{m['fwd_bwd'] / m['step']:>16.0%}")
    print("the preset keeps 8 heads: with fewer, fewer of the sweep's runs found the sequence boundary (03_train's appendix)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]: worker(int(sys.argv[2]), int(sys.argv[3]))
    else: main()
