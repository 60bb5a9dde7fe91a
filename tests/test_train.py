import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zo_gpt.data import stream_floor
from zo_gpt.helpers import ConfigError
from zo_gpt.config import lr_at, make_config, parse_overrides
from zo_gpt.data import reference_excess
from zo_gpt.evaluation import loss_figure
from zo_gpt.checkpoint import load_checkpoint, load_model
from zo_gpt.model import SAMPLE_PIECE, sample_text
from zo_gpt.train import Callback, Checkpointer, MetricsLog, TrainingError, fit


def cfg(compact_data, tmp_path, **kw):
    base = {"data_dir": str(compact_data), "out_dir": str(tmp_path / "run"), "block_size": 64, "batch_size": 8, "device": "cpu",
            "max_iters": 12, "eval_interval": 4, "eval_batches": 2, "warmup_iters": 2}
    return make_config("cpu", {**base, **kw})


def losses(h):
    return [r["loss"] for r in h.train]


def test_overrides():
    c = make_config("a100", parse_overrides(["--batch_size=8", "--compile=False", "--lr=1e-3", "--vocab=compact"]))
    assert (c.batch_size, c.compile, c.lr, c.vocab, c.n_embd) == (8, False, 1e-3, "compact", 768)
    with pytest.raises(ConfigError, match="did you mean 'max_iters'"):
        make_config("cpu", {"max_iter": 5})
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        make_config("cpu", {"batch_size": "0"})
    with pytest.raises(ConfigError, match="batch_size must be int"):
        make_config("cpu", {"batch_size": "eight"})
    with pytest.raises(ConfigError, match="compile must be True or False"):
        make_config("cpu", {"compile": "maybe"})
    with pytest.raises(ConfigError, match="expected --key=value"):
        parse_overrides(["--batch_size", "8"])


def test_lr_schedule():
    c = make_config("cpu", {"lr": 1.0, "min_lr": 0.1, "warmup_iters": 10, "max_iters": 110})
    assert lr_at(c, 0) < lr_at(c, 5) < lr_at(c, 9) <= 1.0
    after = [lr_at(c, i) for i in range(10, 111)]
    assert after[0] == pytest.approx(1.0) and after[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_same_seed_same_losses(compact_data, tmp_path):
    a = fit(cfg(compact_data, tmp_path / "a"), verbose=False)
    b = fit(cfg(compact_data, tmp_path / "b"), verbose=False)
    c = fit(cfg(compact_data, tmp_path / "c", seed=7), verbose=False)
    assert losses(a) == losses(b) and losses(a) != losses(c)
    assert a.final["loss"] == b.final["loss"] and len(a.val) == 3


class StopAt(Callback):
    "Interrupts when it hears of step `it` (on CUDA, at the read-back after it)."
    def __init__(self, it): self.it = it
    def on_step(self, state, record):
        if record["iter"] == self.it: raise KeyboardInterrupt


def test_interrupt_saves_and_resume_continues_exactly(compact_data, tmp_path):
    full = fit(cfg(compact_data, tmp_path / "full"), verbose=False)
    c = cfg(compact_data, tmp_path / "cut")
    part = fit(c, callbacks=[StopAt(6), Checkpointer(), MetricsLog()], verbose=False)
    assert part.interrupted and len(part.train) == 6 and part.final is None
    assert load_checkpoint(Path(c.out_dir) / "ckpt.pt")["iter"] == 6
    assert not [p for p in Path(c.out_dir).iterdir() if p.name.startswith(".")]  # no temp files left
    from zo_gpt.shared_run import check_shared_run
    assert check_shared_run(c) == "continue"                       # B257: a notebook whose kernel was killed continues its run
    rest = fit(c, callbacks=[Checkpointer(), MetricsLog()], resume=True, reuse=True, verbose=False)   # as the notebooks call it
    assert losses(rest) == losses(full) and rest.final["loss"] == pytest.approx(full.final["loss"], abs=1e-6)
    kinds = [json.loads(line)["kind"] for line in (Path(c.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 12 and kinds.count("final") == 1
    with pytest.raises(TrainingError, match="another configuration: lr=0.03 there, 0.02 now"):
        fit(cfg(compact_data, tmp_path / "cut", lr=0.02), resume=True, verbose=False)


def test_reuse_returns_only_the_same_finished_run_with_all_its_files(compact_data, tmp_path, capsys):
    from zo_gpt.train import RunFiles
    files = lambda: [Checkpointer(), MetricsLog(), RunFiles()]
    c = cfg(compact_data, tmp_path)
    first = fit(c, callbacks=files(), verbose=False)
    ckpt = Path(c.out_dir) / "ckpt.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = fit(c, callbacks=files(), reuse=True)
    assert "reused the finished run in" in capsys.readouterr().out and ckpt.stat().st_mtime_ns == stamp
    assert losses(again) == losses(first) and again.final == first.final and again.val == first.val
    with pytest.raises(ConfigError, match="holds a run"):           # other settings: not this run, never replaced unasked
        fit(cfg(compact_data, tmp_path, lr=0.02), callbacks=files(), reuse=True, verbose=False)
    (Path(c.out_dir) / "loss.png").unlink()                              # a file missing: trained again, with overwrite
    fit(c, callbacks=files(), reuse=True, overwrite=True, verbose=False)
    assert ckpt.stat().st_mtime_ns != stamp and (Path(c.out_dir) / "loss.png").exists()
    cut = cfg(compact_data, tmp_path / "cut")
    fit(cut, callbacks=[StopAt(6), *files()], verbose=False)             # a stopped run is not a finished one
    with pytest.raises(ConfigError, match="--resume"):
        fit(cut, callbacks=files(), reuse=True, verbose=False)
    with pytest.raises(ConfigError, match="reuse must be True or False"):
        fit(c, reuse="yes")


class Heard(Callback):
    def __init__(self): self.iters = []
    def on_step(self, state, record): self.iters.append(record["iter"])


def test_losses_read_back_every_few_steps_give_the_same_run(compact_data, tmp_path):
    "On CUDA the loop reads the loss back every few steps (no wait for the device each step): the same history, checks and resume."
    keys = lambda h: [(r["iter"], r["tokens"], r["loss"], r["lr"]) for r in h.train]
    full = fit(cfg(compact_data, tmp_path / "full", eval_interval=6), verbose=False)
    with pytest.raises(TrainingError) as each:
        fit(cfg(compact_data, tmp_path / "boom1", lr=1e9), verbose=False)
    heard = Heard()                                                      # read back at steps 4, 6, 10 and 12
    batched = fit(cfg(compact_data, tmp_path / "b", eval_interval=6, read_back_every=4), callbacks=[heard, MetricsLog()],
                  verbose=False)
    assert keys(batched) == keys(full) and batched.final["loss"] == full.final["loss"] and heard.iters == list(range(1, 13))
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iter"] for line in lines if json.loads(line)["kind"] == "train"] == list(range(1, 13))
    with pytest.raises(TrainingError) as batch:
        fit(cfg(compact_data, tmp_path / "boom4", lr=1e9, read_back_every=4), verbose=False)
    assert str(batch.value).split(";")[0] == str(each.value).split(";")[0]    # the same step named: "the loss is nan at iteration N"
    c = cfg(compact_data, tmp_path / "cut", eval_interval=6, read_back_every=4)
    part = fit(c, callbacks=[StopAt(3), Checkpointer(), MetricsLog()], verbose=False)  # heard at step 4's read-back
    assert part.interrupted and [r["iter"] for r in part.train] == [1, 2, 3, 4]
    rest = fit(c, callbacks=[Checkpointer(), MetricsLog()], resume=True, verbose=False)
    assert keys(rest) == keys(full)


class FinalListener(Callback):
    "Records the final evaluation's progress; with `stop`, ends it after its first forward pass."
    def __init__(self, stop=False): self.stop, self.heard = stop, []
    def on_final_batch(self, state, done, total):
        self.heard.append((done, total)); state.stop = state.stop or self.stop


def test_a_final_evaluation_ended_by_a_callback_resumes_to_just_that(compact_data, tmp_path):
    full = fit(cfg(compact_data, tmp_path / "full"), verbose=False)
    c = cfg(compact_data, tmp_path / "cut")
    stopper, listener = FinalListener(stop=True), FinalListener()
    part = fit(c, callbacks=[stopper, Checkpointer(), MetricsLog()], verbose=False)
    assert len(part.train) == 12 and part.final is None and part.interrupted
    assert len(stopper.heard) == 1 and stopper.heard[0][0] < stopper.heard[0][1]     # ended after one of several passes
    rest = fit(c, callbacks=[listener, Checkpointer(), MetricsLog()], resume=True, verbose=False)
    assert losses(rest) == losses(full) and rest.final["kl"] == full.final["kl"] and not rest.interrupted
    assert listener.heard[-1] == (stopper.heard[0][1],) * 2                           # every block, counted to the end
    kinds = [json.loads(line)["kind"] for line in (Path(c.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 12 and kinds.count("final") == 1


class Poison(Callback):
    def on_step(self, state, record):
        if state.iter == 5:
            with torch.no_grad(): state.model.wte.weight.fill_(float("nan"))


def test_non_finite_loss_stops_with_the_last_good_checkpoint(compact_data, tmp_path):
    c = cfg(compact_data, tmp_path)
    with pytest.raises(TrainingError, match=r"the loss is nan at iteration 6; the last good checkpoint is .*ckpt.pt"):
        fit(c, callbacks=[Checkpointer(), Poison()], verbose=False)
    good = load_checkpoint(Path(c.out_dir) / "ckpt.pt")
    assert good["iter"] == 4 and torch.isfinite(good["model"]["wte.weight"]).all()


def test_bad_runs_are_refused(compact_data, tmp_path):
    with pytest.raises(ConfigError, match=r"block_size=9000 needs more than 18001 tokens \(two blocks\); the val split has"):
        fit(cfg(compact_data, tmp_path, block_size=9000), verbose=False)
    with pytest.raises(ConfigError, match="was made for vocab='compact', the model uses vocab='gpt2'"):
        fit(cfg(compact_data, tmp_path, vocab="gpt2"), verbose=False)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        cfg(compact_data, tmp_path, batch_size=0)


def test_checkpoint_model_samples_and_figure(compact_data, tmp_path, capsys):
    c = cfg(compact_data, tmp_path, max_iters=150, eval_interval=50)
    h = fit(c, callbacks=[Checkpointer()], verbose=False)
    model, ckpt = load_model(c.out_dir)
    text, frac, n = sample_text(model, ckpt["tokens_table"], 600, seed=1, verbose=True)
    assert n > 540 and 0.5 < frac < 0.85 and set(text.replace("<|endoftext|>", "")) <= set("01 ")
    err = capsys.readouterr().err                       # the bar shows only after half a second: this machine's speed decides
    assert (err == "" or "sample: 100%" in err) and 600 > 2 * SAMPLE_PIECE     # a finished bar, over three pieces
    text_of = {t["id"]: t["text"] for t in ckpt["tokens_table"]}
    eot = next(t["id"] for t in ckpt["tokens_table"] if t["kind"] == "end of text")
    model.eval()
    whole = model.generate(torch.tensor([[eot]]), 600, generator=torch.Generator().manual_seed(1))[0, 1:].tolist()
    assert text == "".join(text_of[i] for i in whole)    # in pieces, the same tokens as one call
    fig = loss_figure(h)
    ys = {round(line.get_ydata()[0], 6) for ax in fig.axes for line in ax.lines if len(set(line.get_ydata())) == 1}
    assert round(h.floor, 6) in ys and round(h.entropy, 6) in ys
    assert {round(v, 6) for v in reference_excess(2 / 3, 200, 64).values()} <= ys     # the reference lines
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "log"]      # the loss, then the excess
    assert h.floor == pytest.approx(stream_floor(2 / 3, 200, 64))


def test_two_processes_with_gloo_stay_in_sync(compact_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "zo_gpt.cli", "train",
                        f"--data_dir={compact_data}", f"--out_dir={out}", "--block_size=64", "--batch_size=8",
                        "--max_iters=6", "--eval_interval=3", "--final_eval=False"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = json.loads((out / "summary.json").read_text())["ddp"]
    assert ddp["world_size"] == 2
    assert ddp["checksums"][0] == ddp["checksums"][1]            # the same weights after 6 synchronised steps
    assert ddp["first_losses"][0] != ddp["first_losses"][1]      # from different batches
    assert "x 2 processes" in r.stdout


def test_gradient_accumulation_counts_tokens(compact_data, tmp_path):
    h = fit(cfg(compact_data, tmp_path, grad_accum=3, max_iters=4, final_eval=False), verbose=False)
    assert [r["tokens"] for r in h.train] == [3 * 8 * 64 * i for i in range(1, 5)]
    assert all(math.isfinite(r["loss"]) for r in h.train) and h.final is None


def test_training_without_compile_never_imports_dynamo(compact_data, tmp_path, monkeypatch):
    "torch's optimizers import torch._dynamo (over a second) on first use; zo_gpt's AdamW does not, and steps the same."
    settings = {"data_dir": str(compact_data), "out_dir": str(tmp_path / "run"), "block_size": 64, "batch_size": 8, "max_iters": 6,
                "eval_interval": 3, "eval_batches": 2}
    code = (f"import sys, json; from zo_gpt.config import make_config; from zo_gpt.train import fit, Checkpointer, Callback\n"
            f"class Cut(Callback):\n    def on_step(self, state, record):\n        if state.iter == 4: raise KeyboardInterrupt\n"
            f"c = make_config('cpu', {json.dumps(settings)})\n"
            f"fit(c, callbacks=[Cut(), Checkpointer()], verbose=False)\n"  # stopped at step 4, then resumed:
            f"h = fit(c, callbacks=[Checkpointer()], resume=True, verbose=False)\n"  # every optimizer method runs
            f"print(json.dumps({{'dynamo': 'torch._dynamo' in sys.modules, 'tiktoken': 'tiktoken' in sys.modules, "
            f"'losses': [r['loss'] for r in h.train]}}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["dynamo"] is False and out["tiktoken"] is False and len(out["losses"]) == 6  # nor a tokenizer
    import zo_gpt.model                                             # the same run with torch's own AdamW
    monkeypatch.setattr(zo_gpt.model, "_AdamW", torch.optim.AdamW)
    theirs = fit(cfg(compact_data, tmp_path / "torch", max_iters=6, eval_interval=3, warmup_iters=20), verbose=False)
    assert losses(theirs) == out["losses"]


class Flushing(Callback):
    "Records, at each step, whether the run's thread reads subnormal floats as zero."
    def __init__(self): self.seen = set()
    def on_step(self, state, record):
        from zo_gpt.model import flushing_subnormals
        self.seen.add(flushing_subnormals())


@pytest.mark.parametrize("flush, outer", [(True, False), (False, False), (False, True)])
def test_subnormals_are_flushed_during_a_run_as_set_and_restored_after(compact_data, tmp_path, flush, outer):
    "The run's thread flushes as the run says; the process's own setting, off or on, is back after it."
    from zo_gpt.model import flushing_subnormals
    if not torch.set_flush_denormal(outer): pytest.skip("this CPU cannot flush subnormal floats")
    try:
        cb = Flushing()
        fit(cfg(compact_data, tmp_path, max_iters=3, eval_interval=3, final_eval=False, flush_denormal=flush), callbacks=[cb],
            verbose=False)
        assert cb.seen == {flush}
        assert flushing_subnormals() == outer
    finally: torch.set_flush_denormal(False)
    assert torch.tensor(1e-39).mul(1.0).item() > 0


@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_importing_zo_gpt_asks_openmp_to_wait_passively_unless_told_otherwise(given):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given: env["OMP_WAIT_POLICY"] = given
    code = "import os, zo_gpt; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == (given or "PASSIVE")


def test_importing_torch_first_is_told_in_one_warning():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", "import torch, zo_gpt"], capture_output=True, text=True, env=env, check=True)
    assert "torch was imported before zo_gpt" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-c", "import zo_gpt, torch"], capture_output=True, text=True, env=env, check=True)
    assert r.stderr == ""
