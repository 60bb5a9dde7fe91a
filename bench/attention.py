"""How much of the cpu preset's training step is attention, and how that share depends on the head size.

The cpu preset has 8 heads of 4 dimensions (width 32). torch's CPU attention kernel (scaled_dot_product_attention,
flash) works through each head's block of queries with small matrix products whose inner size is the head size, so
at 4 dimensions it is bound by the number of rows and heads, not by arithmetic. This prints, for the preset's batch
(16 x 256) at width 32 with 8, 4 and 2 heads: the attention kernel's forward and backward, and the whole training
step (forward, backward, clipping, AdamW), at 1 and 2 threads, as medians of 15 after 3 warm-up passes. Each setting
runs in a fresh process (the thread count is fixed when torch starts).

Then the preset's own step (8 heads) done other ways, none of which the package takes: queries, keys and values
zero-padded from 4 to 16 dimensions (the model's loss the same to rounding; the kernel is faster at 16), bfloat16
autocast, torch.compile (its first step, which compiles, and the median after), and torch's math attention, for
scale. These are the measurements behind 03_train's appendix. A cpu-preset run in 15 seconds would need a step three
to four times cheaper: the command spends 7 to 9 s outside its 600 steps (bench/train.py), which leaves 6 to 8 s for
them, against 26 to 30 s now."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


def variant(name, threads):
    "One training step of the cpu preset's model, changed as `name` says; prints a JSON line."
    import zo_gpt  # noqa: F401
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from zo_gpt import model as M
    from zo_gpt.config import make_config
    from zo_gpt.model import GPT, make_optimizer, precision, step_model
    from zo_gpt.train import train_step
    torch.set_num_threads(threads)
    sdpa, calls = F.scaled_dot_product_attention, [0]
    def padded(q, k, v, **kw):   # zero columns add nothing to a score, and the output's extra columns are dropped
        D = q.shape[-1]; calls[0] += 1
        return sdpa(*(F.pad(t, (0, 16 - D)) for t in (q, k, v)), scale=D ** -0.5, **kw)[..., :D]
    def plain(*a, **kw):
        with sdpa_kernel(SDPBackend.MATH): return sdpa(*a, **kw)
    cfg = make_config("cpu", {"dtype": "bfloat16" if name == "bfloat16" else "float32"})
    torch.manual_seed(0)
    model = GPT(cfg.model_config())
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size)); y = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size))
    with torch.no_grad(): before = model(x, y).item()   # the model's loss as the package computes it
    M.F.scaled_dot_product_attention = {"padded": padded, "plain": plain}.get(name, sdpa)
    with torch.no_grad(): diff = abs(model(x, y).item() - before)   # and done this way
    opt = make_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, torch.device("cpu"), name == "compile")
    run = step_model(model, name == "compile", False, 0, torch.device("cpu"))
    times = []
    with precision(torch.device("cpu"), flush_denormal=cfg.flush_denormal):
        for _ in range(18):
            t0 = time.perf_counter(); train_step(run, opt, cfg, lambda: (x, y), 1e-4); times.append(time.perf_counter() - t0)
    print(json.dumps({"first_ms": times[0] * 1e3, "step_ms": statistics.median(times[3:]) * 1e3, "loss_diff": diff, "padded_calls": calls[0]}))


VARIANTS = {"as it is": "as is", "q, k, v padded to 16 dims": "padded", "plain attention (math)": "plain",
            "bfloat16 autocast": "bfloat16", "torch.compile": "compile"}


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
    print("\nthe cpu preset's step (8 heads of 4 dimensions), done another way; ms, medians of 15 after 3")
    print(f"{'variant':>28} {'threads':>8} {'whole step':>11} {'vs as it is':>12}  note")
    for threads in (1, 2):
        base = None
        for label, name in VARIANTS.items():
            with tempfile.TemporaryDirectory() as cache:   # torch.compile's first step as on a fresh machine: an empty cache
                r = subprocess.run([sys.executable, __file__, "--variant", name, str(threads)], capture_output=True, text=True,
                                   env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
            if r.returncode: raise SystemExit(r.stderr)
            m = json.loads(r.stdout.strip().splitlines()[-1])
            base = base or m["step_ms"]
            note = {"padded": f"the model's loss differs by {m['loss_diff']:.0e}",
                    "compile": f"first step {m['first_ms'] / 1e3:.1f} s (compiling, from an empty cache)"}.get(name, "")
            print(f"{label:>28} {threads:>8} {m['step_ms']:>11.1f} {base / m['step_ms']:>11.2f}x  {note}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]: worker(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["--variant"]: variant(sys.argv[2], int(sys.argv[3]))
    else: main()
