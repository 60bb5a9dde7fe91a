"""Misuse from Python, the command line and papermill, as a new user would try it: settings that could only fail late,
folders that are not folders, sizes that cannot fit, wrong types. Each ends in one zo_gpt error naming the argument,
before any work, and every hint it gives leads to a command that works."""
import json
import math
import os
import re
import shutil
import stat
import tempfile
from dataclasses import replace

import numpy as np
import papermill as pm
import pytest
import torch
from conftest import NBS, SMALL, execute_notebook

import zo_gpt.tokens as tokens
from zo_gpt.cli import main
from zo_gpt.config import FLOAT32_MAX, TrainConfig, blocks_at, check_data, fixed_batches, get_batch, lr_at, make_config, open_dataset
from zo_gpt.export import LogitsModel, hf_config, is_export, mean_ablation, readme_text
from zo_gpt.folders import check_folder
from zo_gpt.accounting import categorize, kineto_links
from zo_gpt.figures import png_figure
from zo_gpt.data import (as_text, bayes_entropy, bayes_next, distinct_blocks, entropy, every_block, floor_parts, generate, is_boundary,
                         iter_words, kl_div, latest_boundary, reference_excess, stream_floor)
from zo_gpt.evaluation import (History, Tally, alignment_blocks, attention_on_boundary, attention_weights, check_final, evaluate,
                               evaluate_split, excess_text, loss_figure, measure, mechanism, mechanism_figure, run_summary, stream_ids, with_se)
from zo_gpt.checkpoint import config_from, load_checkpoint, load_model
from zo_gpt.shared_run import check_shared_run
from zo_gpt.helpers import ConfigError, check_batch, free_memory, meta_hash
from zo_gpt.notebooks import NOTEBOOK_FILE, made_by, notebook_folders
from zo_gpt.losses import compare_losses, loss_table
from zo_gpt.model import (GPT, GPTConfig, autocast, ce_chunk_rows, flops_per_token, linear_cross_entropy, make_optimizer, param_counts,
                          sample_text)
from zo_gpt.profiling import category_figure, category_table, device_peak, measure_matmul_peak, ops_table, profile_steps
from zo_gpt.runs import run_style, runs_figure, steps_to
from zo_gpt.train import fit, train_step
from zo_gpt.tokens import DataConfig, Dataset, code_lookup, describe, load_dataset, mc_floor, prepare, word_codes
from zo_gpt.ui import TrainingPanel

TINY = lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5))


def train(data, out, *extra):
    return main(["train", f"--data_dir={data}", f"--out_dir={out}", "--max_iters=2", "--eval_interval=1", *SMALL, *extra])


# 1. Settings that could only fail late are refused when the configuration is made

@pytest.mark.parametrize("name", ["lr", "weight_decay", "grad_clip", "init_std"])
def test_a_float_setting_beyond_float32_is_refused_by_name(name):
    with pytest.raises(ConfigError, match=f"^{name}=1e\\+39 is beyond float32's range"):
        TrainConfig(**{name: 1e39})
    with pytest.raises(ConfigError, match="^lr=1e\\+39 is beyond float32's range"):
        TrainConfig(lr=1e39, min_lr=1e39)
    TrainConfig(lr=3e37, min_lr=0.0)      # within float32, first step too: a bad idea, and the loss says so, but a number it can hold
    assert TrainConfig(lr=3.4028235e38, min_lr=0.0, beta1=0.0).lr == FLOAT32_MAX   # A11 (pass 31): float32's largest, as it prints; was refused
    with pytest.raises(ConfigError, match=r"^lr=1e\+38 with beta1=0.9 makes AdamW's first step lr / \(1 - beta1\) = 1e\+39, beyond"):
        TrainConfig(lr=1e38, min_lr=0.0)  # B9 B10 (pass 32): torch's overflow in its first step, with no warm-up
    with pytest.raises(ConfigError, match=r"^lr=1e-45 is below 1.175e-38, float32's smallest normal number, which a run reads as 0"):
        TrainConfig(lr=1e-45, min_lr=0.0)                                  # was trained at a rate of 0
    for lr in (1.2e-38, 1e-30, 1e-9):   # A36 (pass 32): the warm-up's rates were 0; A32, A34 (pass 35): no weight moved, exit 0
        with pytest.raises(ConfigError, match=rf"^lr={lr!r} is too small to train in float32: .* raise lr well above 1.2e-09 \(the presets use 0.03 and 0.0006\)$"):
            TrainConfig(lr=lr, min_lr=0.0)
    TrainConfig(lr=2e-9, min_lr=0.0)
    # B51 (pass 38): a warm-up that outlasts the run keeps the rate below that too (0.03 x 4 / 10^9): every step at 1e-10
    with pytest.raises(ConfigError, match=r"^lr=0.03 with warmup_iters=1,000,000,000 \(of max_iters=4, so the rate reaches only 1.2e-10\) is "
                                          r"too small to train in float32: .*; shorten the warm-up, or raise lr well above 1.2e-09"):
        TrainConfig(max_iters=4, warmup_iters=10 ** 9)
    TrainConfig(max_iters=4, warmup_iters=10 ** 7)
    with pytest.raises(ConfigError, match=r"^lr=1.17549435e-38 is too small to train"):   # B7 (pass 35): float32's smallest normal itself, not "below" it
        TrainConfig(lr=1.17549435e-38, min_lr=1.17549435e-38)


def test_settings_beyond_float32_leave_no_run_folder(tiny_data, tmp_path, capsys):
    assert train(tiny_data, tmp_path / "run", "--lr=1e39", "--min_lr=0") == 2
    assert "lr=1e+39 is beyond float32's range" in capsys.readouterr().err and not (tmp_path / "run").exists()
    # A37 (pass 37): float32's largest as it prints, a little above it as a double, was torch's 59-line overflow in AdamW's step
    assert train(tiny_data, tmp_path / "big", "--lr=3.4028235e38", "--beta1=0", "--warmup_iters=0", "--grad_clip=0") == 1
    assert "loss is nan at iteration 1; no checkpoint yet; the run diverged: try a smaller lr" in capsys.readouterr().err.strip().splitlines()[-1]
    # B11 (pass 37): a clip below AdamW's eps left every weight where it began, and the run ended 0
    for clip in ("1e-45", "1e-30", "9e-9"):
        assert train(tiny_data, tmp_path / "clip", f"--grad_clip={clip}") == 2
        assert f"grad_clip={float(clip)!r} would cut the gradient below AdamW's eps (1e-8)" in capsys.readouterr().err
    assert not (tmp_path / "clip").exists()


def test_a_model_too_big_for_memory_is_refused_before_any_work(tiny_data, tmp_path, capsys):
    data = load_dataset(tiny_data)
    with pytest.raises(ConfigError, match=r"^n_layer=1, n_embd=1,048,576 make a model of about [\d,]+ parameters"):
        check_data(make_config("cpu", {"vocab": "compact", "n_embd": 2 ** 20, "n_head": 1}), data)
    assert train(tiny_data, tmp_path / "run", "--n_layer=1000000000") == 2      # would take hours to build, then fail
    assert "n_layer must be at most 1,000, got 1,000,000,000" in capsys.readouterr().err and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"^eval_batches=1 of batch_size=1,000,000,000,000 x block_size=32 would score .* try a smaller batch_size$"):
        check_data(make_config("cpu", {"batch_size": 10 ** 12, "block_size": 32, "eval_batches": 1}), data)
    # B47 (pass 35): a million batches from a val split of 1,220 tokens took minutes an evaluation; the advice is a bound that serves
    with pytest.raises(ConfigError, match=r"^eval_batches=1,000,000 of batch_size=4 x block_size=32 would score 128,000,000 tokens "
                                          r"at every evaluation, each of the val split's 1,220 104,918.0 times on average, where 100 is the most; use eval_batches=953 at most$"):
        check_data(make_config("cpu", {"batch_size": 4, "block_size": 32, "eval_batches": 10 ** 6}), data)
    check_data(make_config("cpu", {"batch_size": 4, "block_size": 32, "eval_batches": 953}), data)
    with pytest.raises(ConfigError, match=r"each of the val split's 1,220 100.1 times on average, where 100 is the most; use eval_batches=953 at most$"):
        check_data(make_config("cpu", {"batch_size": 4, "block_size": 32, "eval_batches": 954}), data)   # B8 (pass 43): memory was given as the reason


# 2. prepare reuses a finished dataset it cannot write; the tokenizer notebook checks its parameters first

def test_prepare_reuses_a_finished_read_only_dataset(tiny_data, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    shutil.copytree(tiny_data, ro)
    def refused(folder, name="out"):   # what a folder that cannot be written gives, even to root
        raise ConfigError(f"{name}={str(folder)!r} is not a writable folder: Permission denied")
    monkeypatch.setattr(tokens, "folder_lock", refused)
    for f in (*ro.iterdir(), ro): f.chmod(f.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        meta = prepare(DataConfig(n_seq=200, seq_len=60, vocab="compact"), ro)
        assert meta == json.loads((ro / "meta.json").read_text()) and "reused" in capsys.readouterr().out
        with pytest.raises(ConfigError, match="not a writable folder"):      # other arguments: it would have to write
            prepare(DataConfig(n_seq=200, seq_len=61, vocab="compact"), ro)
    finally:
        for f in (ro, *ro.iterdir()): f.chmod(f.stat().st_mode | stat.S_IWUSR)


def first_failure(name, tmp_path, **params):
    "Run notebook `name` under papermill with `params`; the one-line error and whether it came from the first code cell after the parameters."
    out, cwd = tmp_path / f"out-{name}", tmp_path / "cwd"
    cwd.mkdir()
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute_notebook(str(NBS / name), str(out), parameters=params, cwd=str(cwd), kernel_name="python3",
                            progress_bar=False)
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    tags = [c["metadata"].get("tags", []) for c in cells]
    first = next(i for i, t in enumerate(tags) if "injected-parameters" in t) + 1
    failed = next(i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert not list(cwd.iterdir())                                  # nothing written where the notebook runs
    return e.value.traceback, failed == first


@pytest.mark.parametrize("params, line", [
    ({"n_seq": -5}, "ConfigError: n_seq must be a positive integer, got -5"),
    ({"val_frac": 0.95, "n_seq": 5}, "ConfigError: val_frac=0.95 leaves the training split empty"),
    ({"block_size": 10 ** 9}, "ConfigError: block_size=1000000000 needs more than 1000000001 tokens"),
    ({"out": ""}, "ConfigError: out must name a folder, got ''"),
])
def test_the_tokenizer_notebook_checks_its_parameters_first(tmp_path, params, line):
    error, first = first_failure("01_tokenizer.ipynb", tmp_path, **{"out": str(tmp_path / "w"), **params})
    assert len(error) == 1 and error[0].startswith(line) and first, error
    assert not (tmp_path / "w").exists()


# 3. A folder parameter given as '' never means the filesystem's root or the current folder

@pytest.mark.parametrize("name, param", [("02a_config.ipynb", "run_dir"), ("02b_evaluation.ipynb", "run_dir"),
                                         ("03a_panel.ipynb", "run_dir"), ("04_profile.ipynb", "out")])
def test_an_empty_folder_parameter_is_refused_first(tmp_path, name, param):
    error, first = first_failure(name, tmp_path, **{param: ""})
    assert error == [f"ConfigError: {param} must name a folder, got ''"] and first


# 4. A data folder that is a file or a broken link gets advice that works

@pytest.fixture
def odd_folders(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


@pytest.mark.parametrize("name, says", [
    ("file", "is a file, not a folder; choose another folder"),
    ("file/sub", "is inside '{}', a file, not a folder; choose another folder"),
    ("dangling", "is a symbolic link to {}, which does not exist; choose another folder"),
    ("loop", "is a loop of symbolic links; choose another folder"),
])
def test_a_data_dir_that_cannot_be_a_folder_says_what_it_is(odd_folders, name, says, capsys):
    path = str(odd_folders / name)
    says = says.format(odd_folders / ("gone" if name == "dangling" else "file"))
    with pytest.raises(ConfigError) as e:
        open_dataset(make_config("cpu", {"data_dir": path}))
    assert str(e.value) == f"data_dir={path!r} {says}"
    with pytest.raises(ConfigError) as e:
        load_dataset(path)
    assert str(e.value) == f"path={path!r} {says}"
    assert train(path, odd_folders / "run") == 2
    assert capsys.readouterr().err == f"zo-gpt train: error: data_dir={path!r} {says}\n"
    assert train(odd_folders / "other", odd_folders / "run") == 1         # another folder: the advice there works
    assert "make a dataset there with `zo-gpt prepare" in capsys.readouterr().err


def test_the_hint_for_a_missing_data_dir_works(tmp_path, capsys):
    nope, run = tmp_path / "nope", tmp_path / "run"
    assert train(nope, run) == 1
    hint = capsys.readouterr().err.split("`")[1]                    # the command the message gives
    assert hint == f"zo-gpt prepare --out {nope} --vocab compact"
    assert main(hint.split()[1:]) == 0 and train(nope, run) == 0


def test_the_hint_for_an_edited_meta_json_works(tiny_data, tmp_path, capsys):
    "meta.json changed by hand: its arguments cannot be trusted (n_seq 0 would be refused), so the hint gives the run's vocab only."
    ds, run = tmp_path / "ds", tmp_path / "run"
    shutil.copytree(tiny_data, ds)
    (ds / "meta.json").write_text((ds / "meta.json").read_text().replace('"n_seq": 200', '"n_seq": 0'))
    assert train(ds, run) == 1
    hint = capsys.readouterr().err.split("`")[1]
    assert hint == f"zo-gpt prepare --out {ds} --vocab compact --force"
    assert main(hint.split()[1:]) == 0 and train(ds, run) == 0


def test_a_folder_name_with_a_newline_is_one_line_and_its_hint_works(tmp_path, monkeypatch, capsys):
    "J253: a data_dir holding a newline (built from input()): the refusal is one line, and its hint, pasted into bash, works."
    import subprocess
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data_dir=my\nds", "--out_dir=run", "--max_iters=2", *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`zo-gpt prepare --out $'my\\nds' --vocab compact`" in err, err
    words = subprocess.run(["bash", "-c", "printf '%s\\0' " + err.split("`")[1]], capture_output=True, text=True).stdout.split("\0")
    assert words[:4] == ["zo-gpt", "prepare", "--out", "my\nds"]


def test_profile_names_the_folder_profile_uses(tmp_path, capsys):
    assert main(["profile", "--out", str(tmp_path / "prof"), f"--data_dir={tmp_path / 'nope'}", "--steps=1"]) == 1
    err = capsys.readouterr().err
    assert "data/zero_one" not in err and "`zo-gpt prepare --out" in err and "its --out folder" in err, err


# 5. The Python API's misuse is one line naming the argument, before any big allocation

@pytest.mark.parametrize("out", [None, 123, b"data", ""])
def test_prepare_wants_a_folder_path(tmp_path, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="^out must "):
        prepare(DataConfig(n_seq=20, seq_len=5), out)
    with pytest.raises(ConfigError, match="^cfg must be a DataConfig"):
        prepare({"n_seq": 20}, tmp_path / "x")
    assert not list(tmp_path.iterdir())


HUGE = 10 ** 12

HELPER_MISUSE = [
    (lambda: generate(HUGE, 1000), "n_seq"),
    (lambda: iter_words(10, HUGE), "seq_len"),
    (lambda: floor_parts(2 / 3, 1000, HUGE), "block_size"),
    (lambda: stream_floor(2 / 3, 1000, HUGE), "block_size"),
    (lambda: every_block(10 ** 6, 10 ** 6), "seq_len"),
    (lambda: bayes_entropy(2 / 3, 10 ** 6, 10 ** 6), "seq_len"),
    (lambda: reference_excess(2 / 3, 10 ** 6, 10 ** 6), "seq_len"),
    (lambda: reference_excess(2 / 3, 1000, True), "block_size"),
    (lambda: reference_excess([2 / 3], 1000, 8), "p"),
    (lambda: reference_excess(2 / 3, "1000", 8), "seq_len"),
    (lambda: stream_floor(float("nan"), 1000, 8), "p"),
    (lambda: bayes_next("0 1 1", 2 / 3, 10), "codes"),
    (lambda: bayes_next(np.array([[0.5, 1.0]]), 2 / 3, 10), "codes"),
    (lambda: word_codes(np.array([[0, 2]])), "words"),
    (lambda: alignment_blocks(HUGE * 1000, 8, 61), "n_tokens"),
    (lambda: alignment_blocks(-1, 8, 61), "n_tokens"),
    (lambda: alignment_blocks(1000, 8, 0), "period"),
    (lambda: alignment_blocks(float("nan"), 8, 61), "n_tokens"),
    (lambda: alignment_blocks("1000", 8, 61), "n_tokens"),
    (lambda: evaluate_split(None, np.zeros(1000, np.uint16), {"config": {"seq_len": 10}}, 8, blocks_per_batch=0), "blocks_per_batch"),
]

@pytest.mark.parametrize("call, name", HELPER_MISUSE, ids=[f"{i}-{name}" for i, (_, name) in enumerate(HELPER_MISUSE)])
def test_numeric_helpers_refuse_what_cannot_fit_or_make_sense(call, name):
    with pytest.raises(ConfigError, match=f"^{name}"):
        call()


def test_mc_floor_refuses_a_block_that_cannot_fit(tiny_data):
    ds = load_dataset(tiny_data)
    big = Dataset(ds.path, {**ds.meta, "config": {**ds.meta["config"], "seq_len": 10 ** 6}}, np.zeros(10 ** 7, np.uint16), ds.val)
    with pytest.raises(ConfigError, match="^seq_len=1,000,000 x block_size=5,000,000 needs about"):
        mc_floor(big, 5 * 10 ** 6, split="train")
    with pytest.raises(ConfigError, match="^ds must be a Dataset"):
        mc_floor(str(tiny_data), 8)
    with pytest.raises(ConfigError, match="^n_blocks=1,000,000,000,000 needs about 16 TB of memory"):
        mc_floor(ds, 32, n_blocks=10 ** 12)          # was a MemoryError of 7.28 TiB from numpy


@pytest.mark.parametrize("kwargs, says", [
    ({"run_dir": ""}, "run_dir must name a folder, got ''"),
    ({"run_dir": None}, "run_dir must name a folder, got None"),
    ({"run_dir": 7}, "run_dir must name a folder, got 7"),
    ({"max_batch": 0}, "max_batch must be a positive integer"),
    ({"max_block": True}, "max_block must be a positive integer"),
    ({"base": {"lr": 1}}, "base must be a TrainConfig"),
])
def test_the_panel_refuses_wrong_arguments_by_name(kwargs, says):
    with pytest.raises(ConfigError, match=f"^{says}"):
        TrainingPanel(**kwargs)


def test_the_panel_methods_refuse_wrong_arguments(tiny_data, tmp_path):
    panel = TrainingPanel(make_config("cpu", {"data_dir": str(tiny_data)}), run_dir=str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="^batch_size must be a positive integer, got 0"):
            panel.config(batch_size=0)
        with pytest.raises(ConfigError, match="^history must be a History"):
            panel.add({"train": []}, "a dict")
        with pytest.raises(ConfigError, match="^label must be text"):
            panel.add(History({}, 0.7, 0.64, 2 / 3, 60), None)
        with pytest.raises(ConfigError, match="^timeout must be"):
            panel.wait("soon")
        assert panel.wait(1e10) and panel.wait(10 ** 10) and panel.wait(float("inf"))   # longer than a thread can wait: no limit (G160)
        with pytest.raises(ConfigError, match=r"^the max steps slider takes one of 10, 20, .*, 3000, got 5000; a base config"):
            panel.iters.value = 5000                                                                  # G258: set from code
        panel.lr.value = 1e-3
        assert panel.lr.label == "1e-3" and panel.config().lr == 1e-3
        for pairs, says in (([(8,)], "pairs must be"), (7, "pairs must be"), ([(0, 64)], "batch_size must be")):
            panel.start(pairs)
            assert "not started: " + says in panel.status.value and not panel.running, panel.status.value
    finally:
        panel.close()


# 6. The loss figure frames everything it draws

def short_block_history(T=4, seq_len=1000, start=1.7):
    "A made-up run at block `T` that starts `start` above 0.9 and ends far above its floor: all of it should be in the frame."
    from zo_gpt.data import entropy
    p = 2 / 3
    rng = np.random.default_rng(0)
    train = [{"iter": i, "tokens": 64 * i, "loss": float(start * math.exp(-i / 30) + 0.9 + 0.3 * rng.standard_normal())}
             for i in range(1, 101)]
    val = [{"iter": i, "tokens": 64 * i, "loss": start * math.exp(-i / 30) + 0.9, "se": 0.02, "bayes": 0.66,
            "kl": 0.9 - 0.004 * i, "kl_se": 0.01} for i in range(5, 101, 15)]
    final = {"loss": 1.2, "se": 0.01, "kl": 0.5, "kl_se": 0.01, "scored": 100_000}
    cfg = {"block_size": T, "n_embd": 32, "n_layer": 1, "vocab": "compact", "batch_size": 16}
    return History(cfg, stream_floor(p, seq_len, T), entropy(p), p, seq_len, train, val, final)


@pytest.mark.parametrize("T, start", [(2, 1.7), (4, 1.7), (8, 1.7), (256, 1.7), (8, 10.8)])
def test_the_loss_figure_frames_every_validation_loss_and_both_floors(T, start):
    "The first steps' training loss may leave the frame (so that it stays close to the floor); no validation loss may."
    h = short_block_history(T, start=start)
    fig = loss_figure(h)
    high = max(r["loss"] for r in h.val) > 5 * max(h.entropy, h.floor)
    assert fig.axes[0].get_yscale() == ("log" if high else "linear")          # a gpt2 run starts near ln(50,304)
    ys = [r["loss"] + s * r["se"] for r in h.val for s in (-1, 1)] + [r["bayes"] for r in h.val] + [h.entropy, h.floor]
    for ax in fig.axes[:1]:
        lo, hi = ax.get_ylim()
        assert lo <= min(ys) and max(ys) <= hi, (T, lo, hi, min(ys), max(ys))
    for bx in fig.axes[1:]:
        lo, hi = bx.get_ylim()
        kls = [r["kl"] for r in h.val] + [h.final["kl"]] + list(h.references.values())
        assert 0 < lo < min(kls) and max(kls) < hi
    fig.savefig(os.devnull, format="png")


def test_a_source_entropy_near_zero_does_not_stretch_a_log_axis_over_decades():
    "p near 1 (M150): H(p) about 4e-15 under a floor of 0.08; the log axes of both figures stop at a tenth of the floor."
    import warnings
    from zo_gpt.runs import runs_figure
    h = short_block_history(256, start=10.8)
    h.entropy, h.p = 4e-15, 1 - 1e-16
    fig = loss_figure(h)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_ylim()[0] >= h.floor / 10 / 1.04
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # matplotlib's "non-positive ylim on a log axis"
        ax = runs_figure([h], ["p near 1"]).axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > 1e-5                    # not 4e-15: a tenth of its floor
    other = short_block_history(256, start=10.8)
    labels = [t.get_text() for t in runs_figure([h, other], ["p near 1", "p = 2/3"], view="loss").axes[0].get_legend().get_texts()]
    assert "source entropy 0.0000, p = 0.9999999999999999" in labels and not any(re.search(r"p = 1(?![.\d])", l) for l in labels), labels   # B9, pass 47: 'p = 1'
    assert sum("p = 0.9999999999999999" in re.sub(r"\s+", " ", l) for l in labels) == 2, labels                # its floor's line too


def test_a_run_evaluated_only_at_its_end_frames_its_training_loss_but_the_first_steps():
    "eval_interval past max_iters: the one evaluation is at the last step; the frame still holds the later training loss."
    h = short_block_history(256)
    h.val = [dict(h.val[-1], iter=100)]
    lo, hi = loss_figure(h).axes[0].get_ylim()
    w = max(1, len(h.train) // 30)
    smooth = np.convolve([r["loss"] for r in h.train], np.ones(w) / w, mode="valid")
    late = [m for r, m in zip(h.train[w - 1:], smooth) if r["iter"] - w >= 100 // 5]   # after the first fifth of the run
    assert lo <= min(late) and max(late) <= hi, (lo, hi, min(late), max(late))


# 7. Wrong types and values reach no numpy, difflib or matplotlib call: one line naming the argument

COMPACT_TABLE = [{"id": i, "text": t, "kind": k} for i, (t, k) in enumerate([("0", "first word"), ("1", "first word"), (" 1", "word"),
                                                                            (" 0", "word"), ("<|endoftext|>", "end of text")])]
MORE_MISUSE = [
    (lambda: kl_div("a", "b"), "q must be an array of probabilities"),
    (lambda: kl_div([0.5, 0.5], "b"), "log_m must be an array of log-probabilities"),
    (lambda: kl_div([0.5, 0.5], np.log([0.2, 0.3, 0.5])), "q and log_m must give the same number of outcomes"),
    (lambda: kl_div(np.full((2, 5), 0.2), np.zeros((3, 5))), "q of shape (2, 5) and log_m of shape (3, 5) do not broadcast"),
    (lambda: as_text(5), "words must be a 2-d array (sequences x words)"),
    (lambda: as_text([[0, 1], [1]]), "words must be a 2-d array (sequences x words)"),
    (lambda: as_text(np.array([[0, 2]])), "words must be an array of 0s and 1s"),
    (lambda: is_boundary("0 1"), "codes must be an integer array of piece codes 0..4"),
    (lambda: latest_boundary(np.array([[0, 7]])), "codes must be piece codes 0..4"),
    (lambda: entropy(2 / 3, bits="no"), "bits must be True or False, got 'no'"),
    (lambda: excess_text({}), "r lacks 'kl' and 'kl_se'"),
    (lambda: excess_text({"kl": 0.1, "kl_se": "small"}), "r lacks 'kl_se'"),
    (lambda: excess_text([0.1, 0.01]), "r must be a measures dict"),
    (lambda: make_config("cpu", {1: 2}), "unknown setting 1: setting names are text"),
    (lambda: make_config("cpu", {"n_layer": 1001}), "n_layer must be at most 1,000, got 1,001"),
    (lambda: lr_at({"lr": 0.1}, 3), "cfg must be a TrainConfig"),
    (lambda: load_dataset(None), "path must be a dataset folder's path, got NoneType None"),
    (lambda: load_dataset(123), "path must be a dataset folder's path, got int 123"),
    (lambda: load_dataset(""), "path must be a dataset folder's path, got str ''"),
    (lambda: code_lookup({"config": {}}), "meta must be a dataset's meta.json"),
    (lambda: describe(None), "meta must be a dataset's meta.json"),
    (lambda: check_data(TrainConfig(), "data/zero_one-compact"), "data must be a Dataset"),
    (lambda: check_final({"final_eval": True}, None), "cfg must be a TrainConfig"),
    (lambda: open_dataset(TrainConfig(), make="no"), "make must be True or False, got 'no'"),
    (lambda: runs_figure([1], ["a"]), "histories must be History objects"),
    (lambda: runs_figure(History({"block_size": 8}, 0.7, 0.64, 2 / 3, 60), ["a"]), "histories must be History objects"),
    (lambda: runs_figure([History({"block_size": 8}, 0.7, 0.64, 2 / 3, 60)], "a"), "labels must be a list of 1 strings"),
    (lambda: runs_figure([History({"block_size": 8}, 0.7, 0.64, 2 / 3, 60)], [None]), "labels must be a list of 1 strings"),
    (lambda: runs_figure([], [], x=["iter"]), "x must be 'iter' or 'tokens'"),
    (lambda: runs_figure([], [], view=np.array(["loss"])), "view must be one of"),
    (lambda: runs_figure([], [], block_size=0), "block_size must be a positive integer"),
    (lambda: with_se("0.5", 0.1), "with_se takes a number, value, and its standard error, se (0 or more), got value='0.5'"),
    (lambda: attention_weights(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), torch.zeros(1, 8)),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got torch.float32 (1, 8)"),
    (lambda: attention_weights(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), torch.full((1, 8), 5)),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got torch.int64 (1, 8) from 5 to 5"),
    (lambda: mechanism(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), [], {}), "batches must hold at least one"),
    (lambda: mechanism((GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), {}), [], {}),
     "model must be a GPT (see load_model), got tuple (load_model returns the model and its checkpoint: take [0])"),
    (lambda: attention_weights("model", torch.zeros(1, 8, dtype=torch.long)), "model must be a GPT (see load_model), got str"),
    (lambda: attention_weights(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), torch.zeros(1, 8, dtype=torch.uint16)),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got torch.uint16 (1, 8)"),                     # G150: the dataset's own dtype
    (lambda: mechanism(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), [(torch.zeros(1, 8, dtype=torch.uint16),) * 2],
                       {"tokens": [{"id": i, "code": i} for i in range(5)], "config": {"seq_len": 60}}), "x and y must be int64 (or int32)"),   # G150c
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=-1),
     "temperature must be a number, 0 or more, got -1"),                                                          # G151
    (lambda: make_config("cpu", {"weight_decay": 1e30}), "weight_decay=1e+30 with lr=0.03 would multiply the weights by"),   # D167
    (lambda: fixed_batches(np.zeros(1220, np.uint16), make_config("cpu", {"block_size": 2048}), torch.device("cpu")),
     "block_size=2048 needs more than 2,048 tokens to cut a block from; these have 1,220"),                      # G187
    (lambda: check_folder(2024, "run_dir"), "run_dir must be a folder's path, got int 2024"),                     # F170: papermill -p run_dir 2024
    (lambda: attention_weights(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)), torch.zeros(1, 9, dtype=torch.long)),
     "a context of 9 tokens is longer than the model's block_size=8"),                     # G171: the model's own check
    (lambda: evaluate([], [(torch.zeros(1, 8, dtype=torch.long),) * 2], {}), "model must be a GPT (see load_model), or have its log_probs, got list"),
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).generate(torch.zeros(1, 1, dtype=torch.long), 1e3),
     "max_new_tokens must be a positive integer, got 1000.0"),                                                    # G190
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).eval().generate(torch.tensor([[50256]]), 10),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got torch.int64 (1, 1) from 50256 to 50256"),  # G191: GPT-2's end of text
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).eval()(torch.tensor([1, 2])),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got torch.int64 (2,)"),
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).generate(torch.zeros(1, 1, dtype=torch.long), 3, generator=0),
     "generator must be a torch.Generator or None, got int 0"),                                                   # G212: a seed
    (lambda: GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5)).generate([[4, 2]], 3),
     "idx must be a (B, T) tensor of integer token ids from 0 to 4, got [[4, 2]]"),                               # G213
    (lambda: sample_text(GPT(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=50304)), COMPACT_TABLE, 5),
     "tokens_table holds the compact vocabulary's ids (0 to 4); the model has 50,304 rows in its head"),                 # G231
    (lambda: mechanism_figure({"loss": 0.6}, 2 / 3), "mech must be what mechanism() returns, got {'loss': 0.6}"),       # G239
    (lambda: profile_steps(TrainConfig(), trace=5), "trace must be a file's path, got int 5"),
    (lambda: word_codes(np.zeros((3, 0), np.uint8)), "words must hold at least one word in each sequence, got shape (3, 0)"),   # G250
    (lambda: linear_cross_entropy(torch.zeros(8, 4), torch.zeros(5, 4), torch.zeros(8, dtype=torch.long), chunk=-1),
     "chunk must be a whole number, 0 or more (0: the default), got -1"),                                         # G251
    (lambda: linear_cross_entropy(torch.zeros(8, 4), torch.zeros(5, 4), torch.zeros(8, dtype=torch.long), chunk=2.5),
     "chunk must be a whole number, 0 or more (0: the default), got 2.5"),
    (lambda: linear_cross_entropy(torch.zeros(8, 4), torch.zeros(5, 3), torch.zeros(8, dtype=torch.long)),
     "x, weight and targets must be float tensors (N, C) and (V, C), N > 0, and int64 targets (N,); got (8, 4) torch.float32, (5, 3)"),
    (lambda: evaluate_split(TINY(), np.zeros(200, np.uint16), {"config": {"seq_len": 9}, "tokens": []}, 8, device="cuda:7"),
     "device='cuda:7': torch finds"),                                                                             # G252
    (lambda: param_counts((TINY(), {})), "model must be a GPT (see load_model), got tuple (load_model returns"),   # G255
    (lambda: flops_per_token(TINY()), "cfg must be a GPTConfig (a model's is model.config), got GPT"),
    (lambda: attention_on_boundary(np.zeros((4, 8, 32, 32)), np.zeros((4, 31), int)),
     "att must be attention weights (B, n_head, T, T) and codes the piece codes (B, T) of the same blocks; got shapes (4, 8, 32, 32) and (4, 31)"),  # G256
    (lambda: hf_config(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5), eot_id=4.0),
     "eot_id must be None or a token id from 0 to 4, got 4.0"),                                                   # G260
    (lambda: hf_config(GPTConfig(n_head=2, n_embd=16, block_size=8, vocab_size=5), eot_id=-1), "eot_id must be None or a token id from 0 to 4, got -1"),
    (lambda: profile_steps(TrainConfig(), table=tempfile.gettempdir()), f"table={tempfile.gettempdir()!r} is a folder"),
    (lambda: sample_text((TINY(), {}), COMPACT_TABLE, 5), "model must be a GPT (see load_model), got tuple (load_model returns"),  # B1 (pass 18)
    (lambda: autocast(torch.device("cpu"), []), "dtype must be one of ('float32', 'bfloat16', 'float16'), got []"),      # B2
    (lambda: check_batch(torch.zeros(1, 4, dtype=torch.long, device="meta"), torch.zeros(1, 4, dtype=torch.long, device="meta")),
     "x and y must hold their numbers (on the CPU or a GPU), not be meta tensors"),                                   # B3
    (lambda: measure_matmul_peak("cpu", dtype=torch.int64), "dtype must be a torch float dtype and seconds from 0 to 600, got torch.int64"),   # B4
    (lambda: device_peak("cpu", "float64"), "dtype must be one of ('float32', 'bfloat16', 'float16'), got 'float64'"),  # B5
    (lambda: device_peak(torch.device("cuda:0"), "float32"), "device='cuda:0': torch finds 0 CUDA devices here"),   # B8 (pass 34)
    (lambda: profile_steps(TrainConfig(), wait=-1), "wait must be a whole number, 0 or more, got -1"),                 # B6
    (lambda: profile_steps(TrainConfig(), warmup="x"), "warmup must be a whole number, 0 or more, got 'x'"),           # B7
    (lambda: ops_table(None), "result must be a ProfileResult (see profile_steps), got NoneType"),                    # B8
    (lambda: category_table({"a": 1}), "result must be a ProfileResult (see profile_steps), got int"),
    (lambda: evaluate(TINY(), (torch.zeros(2, 4, dtype=torch.long),) * 2, {}), "batches must be a list of (x, y) pairs (see fixed_batches)"),  # B9
    (lambda: evaluate(TINY(), "xy", {}), "batches must be a list of (x, y) pairs (see fixed_batches), got 'xy'"),    # B10
    (lambda: evaluate_split(TINY(), np.zeros(200, np.uint16), Dataset, 8), "meta must be a dataset's meta.json"),     # B11
    (lambda: evaluate_split(TINY(), np.zeros(200, np.uint16), {"config": {"seq_len": 9}, "tokens": []}, 8, tick="x"),
     "tick must be a function of (blocks done, blocks in all), got 'x'"),                                             # B12
    (lambda: compare_losses(8, 4, vocab_size=1, repeats=1), "vocab_size must be at least 2"),                         # B13
    (lambda: fit(TrainConfig(), resume=True, overwrite=True), "--resume (resume=True) continues the run there and --force (overwrite=True) replaces it"),  # B18
    (lambda: tokens.encode_text(np.array([[0, 1]]), enc="gpt2"), "enc must be a tiktoken encoding (see gpt2_encoding), got 'gpt2'"),  # C54 (pass 19)
    (lambda: stream_ids({}), "meta must be a dataset's meta.json"),                                                   # C55
    (lambda: kineto_links(None), "prof must be a torch profiler that has run (torch.profiler.profile), got NoneType"),  # C56
    (lambda: png_figure(figsize="big"), "figsize must be (width, height) in inches, got 'big'"),                       # C57
    (lambda: distinct_blocks(10 ** 18, 10 ** 18), "seq_len=1,000,000,000,000,000,000 x block_size=1,000,000,000,000,000,000 needs about"),  # C59
    (lambda: kl_div(np.array([0.5, np.nan]), np.log([0.5, 0.5])), "q must be an array of probabilities (from 0 to 1, none NaN)"),  # C60
    (lambda: kl_div(np.array([1.5, -0.5]), np.log([0.5, 0.5])), "q must be an array of probabilities (from 0 to 1, none NaN)"),
    (lambda: tokens.encode_words(np.array([[0, 1]]), vocab="compact", enc="x"), "enc must be a tiktoken encoding (see gpt2_encoding), got 'x'"),  # B90 (pass 20)
    (lambda: blocks_at(np.arange(10), np.array([8]), 4), "starts must be offsets into data from 0 to 5 (len(data) - block_size - 1), got [8]"),  # B93
    (lambda: blocks_at(np.arange(10), np.array([-1]), 4), "starts must be offsets into data from 0 to 5"),
    (lambda: run_style("a"), "i must be a whole number, 0 or more, got 'a'"),                                       # B95
    (lambda: hf_config(None), "cfg must be a GPTConfig (a model's .config), got NoneType"),                           # B100
    (lambda: categorize(None), "name must be an operator's name and ranges a set of range names, got NoneType and frozenset"),  # B101
    (lambda: category_figure({"x": -1.0}), "results must be a dict of ProfileResults (a name: profile_steps' result), got {'x': -1.0}"),  # B113
    (lambda: loss_table([{}]), "results must be compare_losses' rows (dicts of method, ms, peak_mib, loss_diff, grad_diff), got [{}]"),  # B116
    (lambda: mean_ablation([0], torch.zeros(3)), "mean_z must be the heads' mean output, an (n_head, d_head) tensor, got Tensor (3,)"),  # B123
    (lambda: mean_ablation([99], torch.zeros(4, 2)), "heads must be a head number or a list of them, from 0 to 3, got [99]"),  # B124
    (lambda: mean_ablation(torch.tensor([1, 9]), torch.zeros(4, 2)), "heads must be a head number or a list of them, from 0 to 3, got [1, 9]"),
    (lambda: mean_ablation(0, torch.zeros(4, 2))(torch.zeros(1, 2, 8, 2), None), "mean_z is (4, 2), but the heads' output here is (n_head, d_head) = (8, 2)"),
    (lambda: DataConfig(p=1e-310), "p=1e-310 is below 2.225e-308, the smallest normal float, which a run's arithmetic reads as 0"),  # B32
    (lambda: TrainConfig(grad_accum=10 ** 9), "grad_accum must be at most 1,024, got 1,000,000,000"),                 # B6
    (lambda: TrainConfig(out_dir=" "), "out_dir must name a folder, got ' '"),                                        # B23
    (lambda: TrainConfig(out_dir="ds", data_dir="./ds"), "out_dir='ds' is the dataset's folder (data_dir): a run goes in a folder of its own"),  # A73
    (lambda: kl_div(np.array([.5, .5]), np.array([0., 0.])), "log_m must be log-probabilities: where q is above 0 they must sum to at most 1"),  # B68 (pass 21)
    (lambda: ce_chunk_rows(0), "vocab_size must be a positive integer, got 0"),                                       # B79
    (lambda: linear_cross_entropy(torch.zeros(2, 4), torch.zeros(5, 4), torch.tensor([0, 9])), "targets must be token ids from 0 to 4 (weight's rows), got 0 to 9"),  # B81
    (lambda: compare_losses(10 ** 9, 4096, 50304), "rows=1,000,000,000 x vocab_size=50,304 needs about"),              # B82
    (lambda: GPTConfig(n_embd=2 ** 40, n_head=1), "n_layer=1, n_embd=1,099,511,627,776, vocab_size=50,304, block_size=256 needs about"),  # B93
    (lambda: make_optimizer(TINY(), lr=-1), "lr must be a finite number > 0, got -1"),                                # B94
    (lambda: make_optimizer(TINY(), lr=1e-3, betas=(0.9,)), "betas must be two numbers in [0, 1), AdamW's beta1 and beta2, got (0.9,)"),
    (lambda: make_optimizer("gpt", lr=1e-3), "model must be a torch module (a GPT), got str"),
    (lambda: get_batch(np.zeros(100, np.uint16), 0, 4, torch.Generator(), "cpu"), "block_size must be a positive integer, got 0"),  # B96
    (lambda: fixed_batches(None, TrainConfig(), "cpu"), "data must be a split's token ids (a Dataset's train or val: a 1-d array of integers), got NoneType"),  # B98
    (lambda: Tally().add({}), "m must be what measure returns (loss, bayes, kl, part, p_eot), got {}"),                # B99
    (lambda: readme_text(GPTConfig(), "klingon", [], "x"), "vocab must be 'gpt2' or 'compact', got 'klingon'"),       # B103
    (lambda: readme_text(None, "gpt2", [], "x"), "cfg must be a GPTConfig (a model's .config), got NoneType"),
    (lambda: is_export(None), "folder must be a folder's path, got NoneType"),                                        # B104
    (lambda: LogitsModel(lambda i: torch.zeros(*i.shape, 3)).log_probs(torch.zeros(1, 2, dtype=torch.long), [0, 3]),
     "logits_of must give logits (B, T, V) with V above the largest token id, 3"),                                     # B105
    (lambda: meta_hash(None), "meta must be a dataset's meta.json (a dict), got NoneType"),                           # B108
    (lambda: TINY().token_losses(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 9]])), "targets must be a (B, T) tensor of integer token ids from 0 to 4, got torch.int64 (1, 2) from 0 to 9"),  # B110
    (lambda: train_step(TINY(), None, TrainConfig(), lambda: None, 0.1),
     "train_step takes a model, its optimizer and a function that returns a batch, got GPT, NoneType and function"),  # B12 (pass 34)
    (lambda: train_step(m := TINY(), make_optimizer(m, 0.01), TrainConfig(), lambda: (torch.zeros(1, 8, dtype=torch.long),) * 2, float("nan")),
     "lr must be a finite number, 0 or more, got nan"),                                                                # B11: the weights went to nan
]

@pytest.mark.parametrize("call, says", MORE_MISUSE, ids=[f"{i}-{says.split()[0]}" for i, (_, says) in enumerate(MORE_MISUSE)])
def test_wrong_types_are_refused_by_name(call, says):
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}"):
        call()


def test_flags_must_be_true_or_false(tiny_data, tmp_path):
    "'no' is true to Python: prepare(force='no') used to replace a dataset made with other arguments."
    ds = tmp_path / "ds"
    shutil.copytree(tiny_data, ds)
    before = (ds / "meta.json").read_text()
    for kwargs, says in (({"force": "no"}, "force must be True or False, got 'no'"),
                         ({"verbose": "yes"}, "verbose must be True or False, got 'yes'"), ({"force": 1}, "force must be True or False, got 1")):
        with pytest.raises(ConfigError, match=f"^{says}$"):
            prepare(DataConfig(n_seq=300, seq_len=60, vocab="compact"), ds, **kwargs)
    assert (ds / "meta.json").read_text() == before
    with pytest.raises(ConfigError, match="^verify must be True or False, got 'no'$"):
        load_dataset(ds, verify="no")
    assert load_dataset(ds, verify=False).meta["content_hash"] == json.loads(before)["content_hash"]


@pytest.mark.skipif(free_memory() is None, reason="the system does not say how much memory is free")
def test_the_model_check_counts_what_training_holds(tiny_data):
    "Weights, gradients and AdamW's two moments: 16 bytes a parameter. Weights that take half the free memory are refused."
    n_embd = int(math.sqrt(free_memory() / 8 / 12))                 # 12 n_embd^2 parameters: 4 bytes each is half the memory
    with pytest.raises(ConfigError, match=r"^n_layer=1, n_embd=[\d,]+ make a model of about [\d,]+ parameters: [\d.]+ [kMGT]?B for the "
                                          r"weights, gradients and AdamW's two moments \(float32\); [\d.]+ [kMGT]?B of memory is free$"):
        check_data(make_config("cpu", {"n_embd": n_embd, "n_head": 1}), load_dataset(tiny_data))


def test_a_million_layers_are_refused_at_once(tiny_data, tmp_path, capsys):
    assert train(tiny_data, tmp_path / "run", "--n_layer=1000000", "--n_embd=16", "--n_head=2") == 2   # refused before any model
    assert not (tmp_path / "run").exists()
    assert capsys.readouterr().err == "zo-gpt train: error: n_layer must be at most 1,000, got 1,000,000\n"
    make_config("cpu", {"n_layer": 1000})                           # the bound itself is allowed


# 8. A bad notebook parameter is refused in the first cell after the parameters, before any folder is made

@pytest.mark.parametrize("name, params, line", [
    ("03_train.ipynb", {"overrides": '{"max_iters": "abc"}'}, "ConfigError: max_iters must be int, got 'abc'"),
    ("03_train.ipynb", {"preset": "a101"}, "ConfigError: preset must be one of ('cpu', 'a100'), got 'a101'"),
    ("02_model.ipynb", {"n_head": 3}, "ConfigError: n_embd=128 must be a multiple of n_head=3"),
    ("04_profile.ipynb", {"out": "RUN", "overrides": '{"bogus": 1}'}, "ConfigError: unknown setting 'bogus'"),           # B19 (pass 18)
    ("03a_panel.ipynb", {"run_dir": "RUN", "n_head": 3}, "ConfigError: n_embd=32 must be a multiple of n_head=3"),      # B20
    ("01_tokenizer.ipynb", {"out": "RUN", "mc_blocks": 10 ** 13}, "ConfigError: mc_blocks must be from 30 to 1,000,000"),  # B21
    ("04a_losses.ipynb", {"vocab_size": 1}, "ConfigError: vocab_size must be at least 2"),                               # B22
    ("00b_folders.ipynb", {"readers": 10 ** 9}, "ConfigError: readers must be at most 64"),                              # B23
    ("04a_losses.ipynb", {"batch_size": 1, "block_size": 1, "n_embd": 10 ** 6}, "ConfigError: the head, vocab_size=50,304 x n_embd=1,000,000 needs about"),  # C63, A39 (pass 25)
    ("02d_runs.ipynb", {"steps": 100}, "ConfigError: steps must be from 120 to 1,000,000"),   # A56 (pass 26): once an IndexError 10 cells on
    ("04a_losses.ipynb", {"batch_size": 10 ** 6}, "ConfigError: batch_size=1,000,000 x block_size=256 x vocab_size=50,304 activations, with the head needs about"),
    ("01_tokenizer.ipynb", {"out": "RUN", "n_seq": 3, "seq_len": 1, "val_frac": 0.34, "block_size": 2, "vocab": "compact"},
     "ConfigError: n_seq=3 sequences of seq_len=1 words give a train split of 4 tokens"),                               # C65
    ("01_tokenizer.ipynb", {"out": "RUN", "seq_len": 10 ** 12, "vocab": "compact"},
     "ConfigError: seq_len=1,000,000,000,000 x 1,000 sequences a chunk needs about"),                                   # A27 (pass 33)
    ("03_train.ipynb", {"overrides": '{"data_dir": "FILE"}'}, "ConfigError: data_dir='FILE' is a file, not a folder"),   # A43 (pass 36)
    ("04_profile.ipynb", {"out": "RUN", "overrides": '{"data_dir": "FILE"}'}, "ConfigError: data_dir='FILE' is a file, not a folder"),
])
def test_a_bad_notebook_parameter_is_refused_first_and_makes_no_folder(tmp_path, name, params, line):
    (afile := tmp_path / "summary.json").write_text("{}")   # a file given where a folder belongs
    params = {k: str(tmp_path / "run") if v == "RUN" else v.replace("FILE", str(afile)) if isinstance(v, str) else v for k, v in params.items()}
    line = line.replace("FILE", str(afile))
    error, first = first_failure(name, tmp_path, **{"run_dir": str(tmp_path / "run"), **params} if name == "03_train.ipynb" else params)
    assert len(error) == 1 and error[0].startswith(line) and first, error
    assert not (tmp_path / "run").exists()


# 9. What the Python API is handed after it was made is checked where it is used

def test_settings_assigned_after_the_config_was_made_are_checked_by_fit(tiny_data, tmp_path):
    for name, value, says in (("lr", "0.1", "lr must be float, got '0.1'"), ("max_iters", float("nan"), "max_iters must be int, got nan"),
                              ("n_head", 3, "n_embd=32 must be a multiple of n_head=3")):
        cfg = make_config("cpu", {"data_dir": str(tiny_data), "out_dir": str(tmp_path / name)})
        setattr(cfg, name, value)
        with pytest.raises(ConfigError, match=f"^{re.escape(says)}"):
            fit(cfg, verbose=False)
        assert not (tmp_path / name).exists()


def test_the_panel_and_steps_to_take_what_a_user_hands_them(tiny_data, tmp_path):
    h = History({**vars(make_config("cpu")), "foo": 1}, 0.7, 0.64, 2 / 3, 60, [], [{"iter": 5, "kl": 0.01}])
    panel = TrainingPanel(make_config("cpu", {"data_dir": str(tiny_data)}), run_dir=str(tmp_path))
    try:
        panel.add(h, "a setting this version does not know")              # left out, as a checkpoint's are
        assert len(panel.runs) == 1
        with pytest.raises(ConfigError, match="^history.config holds an unusable configuration: lr must be > 0"):
            panel.add(History({**h.config, "lr": -1.0}, 0.7, 0.64, 2 / 3, 60), "a bad one")
        assert panel.wait(timeout=float("inf")) and panel.wait(timeout=math.inf)   # no limit, as None
    finally:
        panel.close(timeout=float("inf"))
    for bad in ("a", None, float("nan"), -1):
        with pytest.raises(ConfigError, match="^excess must be a number of nats per token, 0 or more"):
            steps_to(h, excess=bad)
    assert steps_to(h, excess=0.01) == 5 and steps_to(h, excess=0) is None


def test_the_loss_figure_of_a_run_stopped_before_its_first_evaluation_frames_its_training_loss():
    h = short_block_history(8)
    h.val, h.final = [], None
    ax = loss_figure(h).axes[0]
    (lo, hi), smooth = ax.get_ylim(), ax.lines[1].get_ydata()               # the curve of means the legend names
    assert lo <= min(smooth) and max(smooth) <= hi and lo <= np.median([r["loss"] for r in h.train]) <= hi


# 10. A notebook replaces or deletes only what it made: any other folder it is handed is refused first, in one line

def test_a_notebook_writes_only_into_a_new_empty_or_own_folder(tmp_path):
    mine, new = tmp_path / "mine", tmp_path / "new"
    mine.mkdir(); (mine / "train.bin").write_bytes(b"a user's")
    with pytest.raises(ConfigError, match=r"^out='.*mine' holds train.bin \(no notebook made it its own\); 01_tokenizer writes only into"):
        notebook_folders("01_tokenizer", {"scratch": new, "out": mine})
    assert not new.exists() and (mine / "train.bin").read_bytes() == b"a user's"      # every folder checked before any is made
    assert notebook_folders("01_tokenizer", {"out": new}) == [new] and made_by(new) == "01_tokenizer"
    (new / "meta.json").write_text("{}")
    assert notebook_folders("01_tokenizer", {"out": new}) == [new]                      # its own: taken again, replaceable
    with pytest.raises(ConfigError, match=r"holds meta.json \(01_tokenizer made it\); 05_cli writes only"):
        notebook_folders("05_cli", {"out": new})
    with pytest.raises(ConfigError, match=r"choose another run_dir$"):                  # a folder inside the one named
        notebook_folders("03_train", {"run_dir/short": mine})
    (tmp_path / "empty").mkdir(); notebook_folders("02c_checkpoint", {"run_dir": tmp_path / "empty"})
    assert [p.name for p in (tmp_path / "empty").iterdir()] == [NOTEBOOK_FILE]


def test_the_shared_run_folder_is_reused_or_refused_before_any_work(finished_run, tmp_path):
    "A notebook's run_dir holding a run with other settings: refused unless fresh; its own settings' run, stopped: continued."
    same = config_from(load_checkpoint(finished_run / "ckpt.pt")["config"])
    assert check_shared_run(same) == "reuse" and check_shared_run(make_config("cpu", {"out_dir": str(tmp_path)})) == "train"
    other = make_config("cpu", {"out_dir": str(finished_run)})
    with pytest.raises(ConfigError, match=r"^run_dir='.*' holds another run \(ckpt.pt, metrics.jsonl, summary.json, loss.png\): "
                                          r"it was trained with .*block_size=32.*, not this notebook's .*block_size=256.*; choose another run_dir$"):
        check_shared_run(other)
    with pytest.raises(ConfigError, match="choose another run_dir, or set fresh = True to replace it$"):
        check_shared_run(other, fresh=False)
    assert check_shared_run(other, fresh=True) == "train"
    with pytest.raises(ConfigError, match=r"^device='cuda:99': torch finds \d+ CUDA devices here; use device=auto or cpu$"):
        check_shared_run(make_config("cpu", {"out_dir": str(tmp_path / "new"), "device": "cuda:99"}))   # A42, pass 46: before 03_train made run_dir/short
    assert not (tmp_path / "new").exists()
    shutil.copytree(finished_run, tmp_path / "stopped")
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text()); summary["interrupted"] = True
    (tmp_path / "stopped" / "summary.json").write_text(json.dumps(summary))
    assert check_shared_run(replace(same, out_dir=str(tmp_path / "stopped"))) == "continue"
    (tmp_path / "stopped" / "ckpt.pt").unlink()
    with pytest.raises(ConfigError, match="it stopped before its first checkpoint; choose another run_dir"):
        check_shared_run(replace(same, out_dir=str(tmp_path / "stopped")))
    with pytest.raises(ConfigError, match=r"it was trained on a dataset made with other arguments than the notebooks. \(.*\); choose another run_dir$"):
        check_shared_run(replace(same, data_dir=str(finished_run / "data-compact")))    # F130: the notebooks' own, to be made there
    from zo_gpt.cli import main
    assert main(["prepare", "--out", str(tmp_path / "seed7"), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact", "--seed", "7"]) == 0
    with pytest.raises(ConfigError, match=r"it was trained on another dataset than the one in .*seed7; choose another run_dir$"):
        check_shared_run(replace(same, data_dir=str(tmp_path / "seed7")))


def test_a_batch_with_no_blocks_and_numpy_seeds(finished_run, tiny_data):
    model, ckpt = load_model(finished_run, device="cpu")
    meta, empty = load_dataset(tiny_data).meta, torch.zeros((0, 32), dtype=torch.long)
    with pytest.raises(ConfigError, match=r"^x and y must be int64 \(or int32\) tensors of token ids of one shape \(B, T\), not empty; got \(0, 32\)"):
        measure(model, empty, empty, meta)
    with pytest.raises(ConfigError, match=r"got \(2, 32\) torch.float32"):
        measure(model, torch.zeros(2, 32), torch.zeros(2, 32), meta)
    with pytest.raises(ConfigError, match=r"^batches is empty: there is nothing to evaluate"):
        evaluate(model, [], meta)
    x = torch.zeros(2, 32, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"^x and y must hold only the token ids \[.*\], got \[10\]$"):
        measure(model, x + 10, x, meta)                                        # ids past the vocabulary: not torch's IndexError
    v = torch.from_numpy(np.asarray(load_dataset(tiny_data).val[:66]).reshape(2, 33).copy())   # the dataset's own uint16
    with pytest.raises(ConfigError, match=r"int64 \(or int32\) tensors .* torch.uint16 .*\(.long\(\) converts them\)$"):
        measure(model, v[:, :-1], v[:, 1:], meta)
    assert measure(model, v[:, :-1].long(), v[:, 1:].long(), meta)["loss"].shape == (2, 32)
    text = sample_text(model, ckpt["tokens_table"], 20, seed=1)[0]
    assert sample_text(model, ckpt["tokens_table"], np.int64(20), seed=np.int64(1))[0] == text


def test_a_notebook_refuses_a_folder_holding_a_users_run_before_any_work(finished_run, tmp_path):
    "02c deletes run_dir/a to start from nothing: a user's run there is refused first, and kept."
    shutil.copytree(finished_run, tmp_path / "mine" / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "mine" / "a").iterdir()}
    error, first = first_failure("02c_checkpoint.ipynb", tmp_path, run_dir=str(tmp_path / "mine"))
    assert len(error) == 1 and error[0].startswith(f"ConfigError: run_dir='{tmp_path / 'mine'}' holds a (no notebook made it its own)") and first, error
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine" / "a").iterdir()} == before


def test_a_notebook_refuses_a_run_dir_holding_another_run_before_any_work(finished_run, tmp_path):
    "05_cli would make its dataset in run_dir and train there: a user's run of other settings is refused first, untouched."
    before = sorted(p.name for p in finished_run.iterdir())
    error, first = first_failure("05_cli.ipynb", tmp_path, run_dir=str(finished_run), out=str(tmp_path / "out"), train_iters=20)
    assert len(error) == 1 and error[0].startswith(f"ConfigError: run_dir='{finished_run}' holds another run") and first, error
    assert "it was trained with" in error[0] and sorted(p.name for p in finished_run.iterdir()) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out inside run_dir", "token files without meta.json"])
def test_05_cli_refuses_folders_that_would_fail_it_late_before_any_work(tiny_data, tmp_path, where):
    "Its own folder where the notebooks' dataset goes, or files that are not the notebooks' dataset there: refused first."
    run_dir = tmp_path / "shared"
    out = run_dir / "data-compact" if where.startswith("out") else tmp_path / "out"
    if where.startswith("token"):
        shutil.copytree(tiny_data, run_dir / "data-compact"); (run_dir / "data-compact" / "meta.json").unlink()
    error, first = first_failure("05_cli.ipynb", tmp_path, run_dir=str(run_dir), out=str(out), train_iters=20)
    assert len(error) == 1 and first and error[0].startswith("ConfigError: "), error
    assert ("overlap" if where.startswith("out") else "that is not the notebooks'") in error[0]
    assert not (tmp_path / "out").exists()


def test_a_notebook_refuses_a_run_dir_holding_a_users_dataset_of_other_arguments_before_any_work(tiny_data, tmp_path):
    "05_cli makes the notebooks' dataset in run_dir/data-compact: a user's dataset of other arguments there is refused first, kept."
    shutil.copytree(tiny_data, tmp_path / "mine" / "data-compact")
    error, first = first_failure("05_cli.ipynb", tmp_path, run_dir=str(tmp_path / "mine"), out=str(tmp_path / "out"), train_iters=20)
    assert len(error) == 1 and first, error
    assert error[0].startswith(f"ConfigError: run_dir='{tmp_path / 'mine'}' holds a dataset folder {tmp_path / 'mine' / 'data-compact'} "
                               "that is not the notebooks': made with other arguments than the notebooks' (n_seq=200, not 10000, seq_len=60, not 1000"), error
    assert not (tmp_path / "out").exists() and load_dataset(tmp_path / "mine" / "data-compact").meta["config"]["n_seq"] == 200


@pytest.mark.parametrize("frozen", ["same", "inside", "parent"])
def test_a_notebooks_own_folder_and_the_shared_run_folder_never_overlap(tmp_path, frozen):
    "03c trains its frozen run in frozen_dir: run_dir there, inside it or holding it is refused before the shared run is trained."
    run_dir = tmp_path / "parent" / "same"
    frozen_dir = {"same": run_dir, "inside": run_dir / "frozen", "parent": tmp_path / "parent"}[frozen]
    error, first = first_failure("03c_ablation.ipynb", tmp_path, run_dir=str(run_dir), frozen_dir=str(frozen_dir))
    assert len(error) == 1 and first, error
    assert error[0].startswith(f"ConfigError: frozen_dir='{frozen_dir}' and run_dir='{run_dir}' overlap (the same folder, or one inside the other)")
    assert not (tmp_path / "parent").exists()
    # a folder of its own that the notebook itself names inside the shared one, as 03_train's short runs: allowed
    assert notebook_folders("03_train", {"run_dir/short": run_dir / "short"}, shared={"run_dir": run_dir}) == [run_dir / "short", run_dir]


def test_a_notebook_folder_parameter_with_a_tilde_is_in_home(tmp_path, monkeypatch):
    "papermill -p scratch '~/nb': the folder is made in $HOME, as the command line and the settings read '~', not as './~'."
    monkeypatch.setenv("HOME", str(tmp_path / "home")); (tmp_path / "home").mkdir(); (tmp_path / "cwd").mkdir()
    execute_notebook(str(NBS / "00c_notebooks.ipynb"), str(tmp_path / "out.ipynb"), parameters={"scratch": "~/nb"},
                        cwd=str(tmp_path / "cwd"), kernel_name="python3", progress_bar=False)
    assert made_by(tmp_path / "home" / "nb") == "00c_notebooks" and not list((tmp_path / "cwd").iterdir())


def test_03_train_keeps_its_run_in_run_dir(tmp_path):
    "overrides' out_dir would send the main run into the notebook's own folder of short runs, which it replaces: refused first."
    error, first = first_failure("03_train.ipynb", tmp_path, run_dir=str(tmp_path / "r"),
                                 overrides={"max_iters": 24, "out_dir": str(tmp_path / "r" / "short")})
    assert len(error) == 1 and first and error[0].startswith("ConfigError: overrides may not set out_dir"), error
    assert not (tmp_path / "r").exists()



def test_a_folder_that_cannot_be_written_leaves_none_of_the_folders_it_made(tmp_path, monkeypatch):
    "A full disk (no inode left) lets the folders be made and refuses the first file (I151): the folders go with the refusal."
    import errno, tempfile
    from zo_gpt.folders import writable_folder
    def no_space(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tempfile, "TemporaryFile", no_space)
    with pytest.raises(ConfigError, match="is not a writable folder: No space left on device"): writable_folder(tmp_path / "a" / "b" / "c", "out")
    assert list(tmp_path.iterdir()) == []


def test_a_notebook_mark_that_cannot_be_written_leaves_none_of_the_folders_it_made(tmp_path, monkeypatch):
    "I250: a disk with inodes but no block lets the folders and their checks through and refuses the notebook's mark."
    import errno
    from zo_gpt import folders
    def no_space(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(folders.tempfile, "mkstemp", no_space)   # the mark's temporary file: what a full disk refuses
    with pytest.raises(ConfigError, match=r"^out='.*exp' is not a folder 04b_export can mark as its own: No space left"):
        notebook_folders("04b_export", {"out": tmp_path / "nb" / "exp"}, shared={"run_dir": tmp_path / "nb" / "run"})
    assert list(tmp_path.iterdir()) == []


def test_fit_refuses_a_dataset_other_than_the_one_its_config_names(tiny_data, tmp_path):
    "fit(cfg, data=) with data opened for another data_dir (G167): the run would record one dataset and train on another."
    shutil.copytree(tiny_data, tmp_path / "other")
    cfg = make_config("cpu", {"data_dir": str(tiny_data), "out_dir": str(tmp_path / "r"), "max_iters": 1, "final_eval": False})
    other = open_dataset(make_config("cpu", {"data_dir": str(tmp_path / "other")}))
    with pytest.raises(ConfigError, match="^data is the dataset in .*other, but the run's data_dir="): fit(cfg, data=other, verbose=False)


def test_load_checkpoint_given_a_run_folder_asks_for_its_file(finished_run):
    "G182: the run folder given where its ckpt.pt is asked for; the line must not say to move the folder away."
    from zo_gpt.helpers import TrainingError
    with pytest.raises(TrainingError, match=r"is a folder: give its ckpt.pt \(load_model takes the run folder\)$"): load_checkpoint(finished_run)


def test_a_log_loss_axis_in_the_runs_figure_labels_the_losses_under_one():
    "A run whose newest loss ends high (M170): its log axis is labelled at 0.7, 1, 1.5, 2 and so on, not only at 10^0."
    import io
    from zo_gpt.runs import runs_figure
    for steps in (8, 100):   # a gpt2 run's first steps; one ending near 1.2
        h = short_block_history(256, start=10.8)
        h.train, h.val = h.train[:steps], [r for r in h.val if r["iter"] <= steps]
        fig = runs_figure([h], ["high"])
        ax = fig.axes[0]
        fig.savefig(io.BytesIO(), format="png")
        shown = {t.get_text() for t in ax.get_yticklabels() if ax.get_ylim()[0] <= t.get_position()[1] <= ax.get_ylim()[1]}
        assert ax.get_yscale() == "log" and len(shown) >= 3, (steps, shown)


def test_the_mechanism_histogram_shows_its_bars_beside_p():
    "P('1') the same to three places at every position (a block-1 run, M171): the bars span the axis they are drawn on."
    from zo_gpt.evaluation import mechanism_figure
    T, rng = 4, np.random.default_rng(0)
    mech = {"c": np.arange(1, T + 1), "p_eot_out": np.full(T, 0.01), "posterior": np.full(T, 0.01), "d": np.arange(T),
            "p_eot_in": np.full(T, 1e-4), "attention": np.full((2, T), 0.5), "uniform": np.full(T, 0.5),
            "p_one": 0.4309 + 0.0018 * rng.random(200)}
    a2 = mechanism_figure(mech, 2 / 3).axes[1]
    lo, hi = a2.get_xlim()
    assert sum(b.get_width() for b in a2.patches) > 0.5 * (hi - lo)


def test_boundary_scores_take_only_the_datasets_own_ids(tiny_data, tiny_gpt2_data):
    "G240: the compact model's batch with the gpt2 dataset's meta: refused as measure refuses it, not eight scores of 1.0."
    from zo_gpt.ladder import boundary_scores
    compact, gpt2 = load_dataset(tiny_data), load_dataset(tiny_gpt2_data)
    x = torch.as_tensor(compact.val[:32].astype(np.int64))[None]
    model = GPT(GPTConfig(n_head=2, n_embd=16, block_size=32, vocab_size=5))
    assert len(boundary_scores(model, x, compact.meta)) == 2
    with pytest.raises(ConfigError, match="x and y must hold only the token ids"): boundary_scores(model, x, gpt2.meta)


def test_the_mechanism_leaves_out_contexts_that_cannot_miss_the_start(tiny_data):
    "M233: a block longer than a sequence (60 words): the exact 1/(n - c) only where the start can be out of view, c < 60."
    data = load_dataset(tiny_data)
    cfg = make_config("cpu", {"block_size": 128, "batch_size": 2, "eval_batches": 1, "n_embd": 16, "n_head": 2, "vocab": "compact"})
    mech = mechanism(GPT(cfg.model_config()).eval(), fixed_batches(data.val, cfg, torch.device("cpu")), data.meta)
    assert list(mech["c"]) == list(range(1, 60)) and len(mech["p_eot_out"]) == 59 and mech["posterior"][-1] == 1.0
    assert mechanism_figure(mech, 2 / 3).axes[0].get_xlim()[1] < 70


def test_a_shared_run_folder_a_run_is_writing_is_named_in_use(finished_run, tmp_path):
    "A232: 04b_export's check while 03_train trains in the same run_dir: 'in use by', not 'did not finish ... set fresh'."
    from zo_gpt.folders import folder_lock
    shutil.copytree(finished_run, tmp_path / "run")
    cfg = make_config("cpu", {"out_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "run" / "data-compact")})
    with folder_lock(tmp_path / "run", "out_dir"):
        with pytest.raises(ConfigError, match=r"run_dir='.*' is in use by process \d+ .*; wait for it to end"): check_shared_run(cfg, fresh=False)


def test_with_se_takes_numpy_numbers():
    "C61: numpy's floats, as tallies return them, are numbers."
    assert with_se(np.float32(1.0), np.float32(0.1)) == with_se(1.0, 0.1)


def public_callables():
    "(module.name, object) of every function and class each chapter makes public (its `__all__`), exceptions left out."
    import importlib, inspect, pkgutil
    import zo_gpt
    out = []
    for info in sorted(pkgutil.iter_modules(zo_gpt.__path__), key=lambda m: m.name):
        if info.name.startswith("_"): continue
        mod = importlib.import_module(f"zo_gpt.{info.name}")
        for name in mod.__all__:
            f = getattr(mod, name)
            if getattr(f, "__module__", None) == mod.__name__ and (inspect.isfunction(f) or inspect.isclass(f) and not issubclass(f, BaseException)):
                out.append((f"{info.name}.{name}", f))
    return out


def test_every_public_function_checks_its_arguments_kinds():
    "Each chapter ends with `check_arguments(globals())`: a chapter that forgets it, or a public function defined after it, is named here."
    import inspect
    unchecked = [n for n, f in public_callables() if not hasattr(f if inspect.isfunction(f) else f.__init__, "__wrapped__")
                 and not (inspect.isclass(f) and (hasattr(f, "check") or "__init__" not in f.__dict__))
                 and not inspect.isgeneratorfunction(inspect.unwrap(f))]   # a generator's or a `with` block's work runs later
    assert len(public_callables()) > 200 and not unchecked, unchecked


def test_every_public_function_refuses_arguments_of_no_kind_in_one_line():
    """Every public function and class, given `object()` for each argument it needs, raises a zo_gpt error (one line that
    names the argument), never an AttributeError or TypeError from inside it. (A few take anything: `shell_word` quotes
    what it is given, `first_line` reads what it can.)"""
    import inspect
    from zo_gpt.helpers import UserError
    bad = []
    for name, f in public_callables():
        params = inspect.signature(f).parameters.values()
        needed = {p.name: object() for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not needed: continue
        try: f(**needed)
        except UserError as e: assert "\n" not in str(e), (name, str(e))
        except Exception as e: bad.append(f"{name}: {type(e).__name__}: {e}")
    assert not bad, bad


@pytest.mark.parametrize("call, message", [
    (lambda: tokens.load_dataset(None), "path must be a dataset folder's path, got NoneType None"),
    (lambda: load_model(""), "run_dir must name a run folder, got ''"),
    (lambda: tokens.load_dataset("a\0b"), "load_dataset(): path must be a path, got str 'a\\x00b'"),
    (lambda: tokens.prepare(out=5), "out must be a folder's path, got int 5"),
    (lambda: profile_steps(make_config("cpu"), active=10 ** 9), "active must be at most 100 steps, got 1,000,000,000"),   # B46 (pass 33)
    (lambda: lr_at("cpu", 3), "cfg must be a TrainConfig (see make_config), got str"),
    (lambda: __import__("zo_gpt.model").model.GPTConfig(dropout=None), "GPTConfig(): dropout must be a number, got NoneType None"),
    (lambda: __import__("zo_gpt.model").model.MLP("cfg"), "MLP(): cfg must be a GPTConfig, got str 'cfg'"),
    (lambda: __import__("zo_gpt.helpers").helpers.read_meta(None), "read_meta(): path must be a path, got NoneType None"),
    (lambda: __import__("zo_gpt.notebooks").notebooks.made_by(3), "made_by(): folder must be a path, got int 3"),
    (lambda: get_batch(np.zeros(10, np.uint16), 4, 2, torch.Generator(), "no-such-device"), "device must be a torch device or its name"),
    (lambda: entropy("0.5"), "p must be a probability strictly between 0 and 1, got '0.5'"),
    (lambda: __import__("zo_gpt.evaluation").evaluation.final_split(make_config("cpu"), None), "final_split(): data must be a Dataset, got NoneType None"),
    (lambda: tokens.code_lookup(None), "meta must be a dataset's meta.json"),
    (lambda: kl_div(np.ones(2) / 2), "kl_div(): missing a required argument: 'log_m'"),
])
def test_python_api_kinds(call, message):
    "Wrong kinds through the Python API, each one line naming the function and its argument."
    from zo_gpt.helpers import ConfigError
    with pytest.raises(ConfigError, match=re.escape(message)): call()


def test_training_losses_above_the_loss_figures_frame_are_marked_and_counted():
    "A60 (pass 24): the first losses of a short run left the top of the frame with nothing to say so."
    h = short_block_history(256, start=1.7)
    ax = loss_figure(h).axes[0]
    hi = ax.get_ylim()[1]
    above = [r for r in h.train if r["loss"] > hi]
    assert above, "the history's first losses should leave the frame"
    marks = [l for l in ax.get_lines() if l.get_label().endswith(f"{max(r['loss'] for r in above):.3g}")]
    assert len(marks) == 1 and marks[0].get_label().startswith(f"{len(above):,} losses above the frame")
    assert set(marks[0].get_ydata()) == {hi} and not marks[0].get_clip_on()
    h.train = [dict(r, loss=0.95) for r in h.train]                      # every loss in the frame: no mark
    assert not [l for l in loss_figure(h).axes[0].get_lines() if "above the frame" in l.get_label()]


def test_training_losses_below_the_loss_figures_frame_are_marked_and_counted():
    """B26 (pass 42): on a p=0.999999 dataset the log axis stops at a tenth of the floor, and two training losses under it
    were cut off with nothing to say so, where those above the frame are marked."""
    h = short_block_history(8, start=10.8)                               # far above the floor at first: a log axis
    h.train[60]["loss"], h.train[70]["loss"] = h.floor / 50, h.floor / 40
    ax = loss_figure(h).axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > h.floor / 40
    marks = [l for l in ax.get_lines() if "below the frame" in l.get_label()]
    assert len(marks) == 1 and marks[0].get_label() == f"2 losses below the frame, down to {h.floor / 50:.3g}", marks
    assert set(marks[0].get_ydata()) == {ax.get_ylim()[0]} and list(marks[0].get_xdata()) == [61, 71]


def test_a_gpt2_model_is_not_scored_on_the_compact_vocabularys_ids(tiny_data, tiny_gpt2_data):
    "B94 (pass 25): a GPT-2-vocabulary model given compact batches and meta read ids 0..4 as GPT-2's '!' to '%' and gave numbers."
    from zo_gpt.ablation import explain
    compact, gpt2 = load_dataset(tiny_data), load_dataset(tiny_gpt2_data)
    model = GPT(GPTConfig(n_head=2, n_embd=16, block_size=32, vocab_size=50304)).eval()
    x = torch.as_tensor(compact.val[:33].astype(np.int64))[None]
    for call in (lambda: evaluate(model, [(x[:, :-1], x[:, 1:])], compact.meta), lambda: evaluate_split(model, compact.val, compact.meta, 32),
                 lambda: explain(model, [(x[:, :-1], x[:, 1:])], compact.meta)):
        with pytest.raises(ConfigError, match=r"^the model has 50,304 rows in its head, and the dataset's token ids go up to 4: a model and a dataset of two vocabularies$"):
            call()
    small = GPT(GPTConfig(n_head=2, n_embd=16, block_size=32, vocab_size=5)).eval()   # and the other way round, as before
    g = torch.as_tensor(gpt2.val[:33].astype(np.int64))[None]
    with pytest.raises(ConfigError, match=r"^the model has 5 rows in its head, and the dataset's token ids go up to 50,256"):
        evaluate(small, [(g[:, :-1], g[:, 1:])], gpt2.meta)
    assert math.isfinite(evaluate(model, [(g[:, :-1], g[:, 1:])], gpt2.meta)["kl"])   # its own vocabulary: scored


def test_pass_26s_api_misuse_is_refused_not_scored(finished_run, tiny_data):
    "B62 B63 B72 B78 (pass 26): floats cut to ids, targets that do not follow the inputs, a History without settings, and 2/3 as a Fraction."
    from fractions import Fraction
    model, _ = load_model(finished_run, device="cpu")
    data = load_dataset(tiny_data)
    with pytest.raises(ConfigError, match=r"^data must be a split's token ids .*got a 1-d float64 array$"):
        evaluate_split(model, data.val.astype(float) + 0.7, data.meta, 32)                  # B62: once r1's numbers
    x = torch.as_tensor(data.val[:33].astype(np.int64))[None]
    with pytest.raises(ConfigError, match=r"^y must be the tokens that follow x"):
        evaluate(model, [(x[:, :-1], x[:, :-1])], data.meta)                                  # B63: bayes inf, kl as for any targets
    assert math.isfinite(evaluate(model, [(x[:, :-1], x[:, 1:])], data.meta)["bayes"])
    h = History(config={}, floor=0.7, entropy=0.6, p=2 / 3, seq_len=60)
    with pytest.raises(ConfigError, match=r"^history.config lacks block_size, n_embd, n_layer, vocab, batch_size"):
        loss_figure(h)                                                                         # B72: a KeyError
    with pytest.raises(ConfigError, match=r"^history.config lacks block_size: the run's settings"):
        run_summary(h, None)                                                                   # B6, pass 46: a KeyError
    with pytest.raises(ConfigError, match=r"^histories\[0\].config lacks block_size: the run's settings"):
        runs_figure([h], ["a"])                                                                # B2, pass 47: a KeyError
    for kw, said in ((dict(config=None), "config must be a dict, got NoneType None"), (dict(config={}, train=[1, 2]), r"train must be a list of dict, got list \[1, 2\]"),
                     (dict(config={}, val=None), "val must be a list of dict, got NoneType None")):   # B3 B6, pass 47: finished, metrics_records, figure_tags raised TypeError and AttributeError
        with pytest.raises(ConfigError, match=rf"^History\(\): {said}$"):
            History(floor=0.7, entropy=0.6, p=2 / 3, seq_len=60, **kw)
    assert DataConfig(p=Fraction(2, 3)).p == 2 / 3 and generate(2, 5, Fraction(2, 3), 1).shape == (2, 5)   # B78
    with pytest.raises(ConfigError, match=r"^words must be an array of integers \(or bools\) 0 and 1, got a float64 array"):
        as_text(np.array([[0.0, 1.0]]))


def test_pass_27s_api_misuse_is_refused_not_answered(finished_run, tiny_data):
    "B14 B18 B25 B35 B42 B44 B46 (pass 27): arguments that contradict each other or describe no stream the source makes."
    from zo_gpt.accounting import account
    from zo_gpt.config import parse_overrides
    from zo_gpt.data import ladder_next
    from zo_gpt.ladder import evaluate_ladder
    model, ckpt = load_model(finished_run, device="cpu")
    data = load_dataset(tiny_data)
    with pytest.raises(ConfigError, match=r"^vocab='gpt2', but a model of vocab_size=5 takes the compact vocabulary"):
        readme_text(model.config, "gpt2", ckpt["tokens_table"], "f")                                     # B14
    h = History(**ckpt["history"])
    assert run_summary(h, "x")["config"] == h.config == ckpt["config"]                                    # B18: one source of settings
    with pytest.raises(ConfigError, match=r"^run_id must be text or None, got 5"):
        run_summary(h, 5)
    with pytest.raises(ConfigError, match=r"^args must be a list of --key=value words"):
        parse_overrides("--lr=1")                                                                         # B25
    codes = np.array([[4, 0, 2, 3]])
    with pytest.raises(ConfigError, match=r"^att must be attention weights: each query's row non-negative and summing to 1"):
        attention_on_boundary(np.full((1, 2, 4, 4), 5.0), codes)                                          # B35
    assert attention_on_boundary(np.tril(np.ones((1, 2, 4, 4))) / np.arange(1, 5)[:, None], codes).shape == (4, 2)
    with pytest.raises(ConfigError, match=r"^codes are not a stream the source makes \(p=0.6, seq_len=3\): '1' cannot come at position 1"):
        ladder_next(np.array([[0, 1, 1, 1]]), 0.6, 3)                                                      # B42: a first word after a first word
    with pytest.raises(ConfigError, match=r"' 0' cannot come at position 2 of 6"):
        bayes_next(np.array([[2] * 6]), 0.6, 3)                                                            # three words and no end, seq_len 3
    z = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"^codes are not a stream the source makes"):
        evaluate_ladder(model, [(z, z)], data.meta)                                                        # B44: once bayes inf
    s = torch.as_tensor(data.val[:33].astype(np.int64))[None]
    x, y = s[:, :-1], s[:, 1:].clone()
    q = bayes_next(code_lookup(data.meta)[x.numpy()], data.meta["config"]["p"], data.meta["config"]["seq_len"])[0, -1]
    y[0, -1] = stream_ids(data.meta)[int(np.argmin(q))]                                               # a piece of probability 0 there
    with pytest.raises(ConfigError, match=r"^y holds a token the source cannot make where it is"):
        measure(model, x, y, data.meta)
    with pytest.raises(ConfigError, match=r"^table must be what event_table returns, with device, rows and steps; it lacks device, rows, steps"):
        account({})                                                                                        # B46: a KeyError


def test_prepare_asks_for_the_disk_its_files_take_no_more(tmp_path, monkeypatch):
    "B77 (pass 27): a dataset that fits was refused for a fixed 64 KiB added to its size."
    import collections
    cfg = DataConfig(n_seq=200, seq_len=60, vocab="compact")
    prepare(cfg, tmp_path / "made", verbose=False)
    takes = sum(f.stat().st_blocks * 512 for f in (tmp_path / "made").iterdir())   # what its files take on this disk
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(tokens.shutil, "disk_usage", lambda p: usage(10 * takes, 0, takes))
    tokens._check_room(cfg, tmp_path / "d")                                          # as much free as it takes: not refused
    monkeypatch.setattr(tokens.shutil, "disk_usage", lambda p: usage(10 * takes, 0, takes // 2))
    with pytest.raises(ConfigError, match=r"needs (\d+\.\d) kB on disk; (\d+\.\d) kB is free") as e:
        tokens._check_room(cfg, tmp_path / "d")
    need = float(re.search(r"needs (\S+) kB", str(e.value)).group(1)) * 1000
    assert takes / 2 < need <= takes + 50                                            # the size it names is the files' own (to 0.1 kB)


def test_pass_28s_api_misuse_is_refused(finished_run, tiny_data):
    "B45 B97 (pass 28): a q that is no distribution, and a checkpoint path given as text."
    from zo_gpt.checkpoint import restore
    from zo_gpt.train import new_run
    with pytest.raises(ConfigError, match=r"^q must be distributions: probabilities that sum to 1 along the last axis"):
        kl_div(np.ones((1, 5)), np.log(np.full((1, 5), 0.2)))                                      # B45: 8.05 nats of nothing
    assert kl_div(np.full((1, 5), 0.2), np.log(np.full((1, 5), 0.2)))[0] == 0
    _, ckpt = load_model(finished_run, device="cpu")
    cfg = TrainConfig(**ckpt["config"])
    state = new_run(cfg, load_dataset(tiny_data), torch.device("cpu"), 0, 1)
    from zo_gpt.helpers import TrainingError
    with pytest.raises(TrainingError, match=r"finished at step 4 of 4: there is nothing to resume"):   # read as a path
        restore(state, str(finished_run / "ckpt.pt"))                                               # B97: 'str' has no attribute 'exists'


def test_pass_30s_findings(finished_run, tiny_data, tmp_path, monkeypatch, capsys):
    """B29 B33 B35 B72 B73 B81 (pass 30): a setting given twice (the last wins), batches measured with another dataset's meta, a probability that is none, a refused run that first made the
    default dataset, resume advice that left out the run's dataset, a panel whose largest block is below its smallest."""
    from zo_gpt.config import parse_overrides
    from zo_gpt.train import Callback, Checkpointer, MetricsLog, RunFiles
    assert parse_overrides(["--lr=1", "--lr=0.01"]) == {"lr": "0.01"}          # B29: the last one wins, as in nanoGPT and argparse
    for p in (float("nan"), -3.0, 1.0):
        with pytest.raises(ConfigError, match=r"^p must be a probability strictly between 0 and 1"):
            mechanism_figure({"c": 0, "posterior": 0, "d": 0, "attention": 0, "p_one": 0}, p)                  # B35
    with pytest.raises(ConfigError, match=r"^max_block must be at least 8, the smallest block size the panel offers, got 3"):
        TrainingPanel(max_block=3)                                                                          # B81: ignored
    other = tmp_path / "other"; prepare(DataConfig(n_seq=300, seq_len=40, vocab="compact", p=0.2), other, verbose=False)
    model, ckpt = load_model(finished_run, device="cpu")
    data, cfg = load_dataset(tiny_data), config_from(ckpt["config"])
    batches = fixed_batches(data.val, cfg, torch.device("cpu"))
    assert evaluate(model, batches, data.meta)["kl"] > 0
    for measured in (lambda m: evaluate(model, batches, m), lambda m: evaluate_split(model, data.val, m, cfg.block_size),
                     lambda m: mechanism(model, batches, m)):                                              # B33: numbers for
        with pytest.raises(ConfigError, match=r"^the tokens were cut from the dataset in .* and meta is another dataset's"):
            measured(load_dataset(other).meta)                                                              # another dataset
    shutil.copytree(tiny_data, tmp_path / "d43"); (tmp_path / "d43" / "meta.json").unlink()              # A32: its settings are gone
    with pytest.raises(tokens.DatasetError, match=r"--force`; meta.json recorded the settings its tokens were made with, so that makes the default"):
        open_dataset(make_config("cpu", {"data_dir": str(tmp_path / "d43")}))
    monkeypatch.chdir(tmp_path)   # where the default dataset, data/zero_one-compact, would be made
    shutil.copytree(finished_run, tmp_path / "done")
    assert main(["train", "--out_dir=done", "--max_iters=4", "--eval_interval=2", *SMALL]) == 2             # B72: refused, after
    assert "holds a run" in capsys.readouterr().err and not (tmp_path / "data").exists()                   # 20 MB of dataset
    assert main(["train", "--preset=a100", "--out_dir=done", "--resume"]) == 1
    assert "cannot be continued with other settings" in capsys.readouterr().err and not (tmp_path / "data").exists()

    class StopAt2(Callback):
        def on_step(self, state, record): state.stop = state.iter == 2
    cfg = make_config("cpu", {"data_dir": str(tiny_data), "out_dir": str(tmp_path / "stopped"), "max_iters": 4, "eval_interval": 2,
                              **parse_overrides(SMALL)})
    assert fit(cfg, callbacks=[StopAt2(), MetricsLog(), Checkpointer(), RunFiles()], verbose=False).interrupted
    assert main(["train", "--out_dir=stopped", "--resume"]) == 1                                            # B73: its settings, and
    err = capsys.readouterr().err                                                                           # its dataset's folder
    options = re.search(r"resume it with its settings \(([^)]*)\)", err).group(1).split()
    assert f"--data_dir={tiny_data}" in options and not (tmp_path / "data").exists(), err
    assert main(["train", "--out_dir=stopped", "--resume", *options]) == 0, capsys.readouterr().err        # the advice works


def test_a_failed_command_removes_the_folders_it_made_on_the_way_through_a_dotdot(tmp_path):
    "B29 (pass 31): `--out d/c/../f2` makes d/c to get there; a command that fails removes it too, never d, which was there."
    from zo_gpt.folders import writable_folders
    (tmp_path / "d").mkdir()
    def fail(paths): raise ConfigError("failed after making the folders")
    with pytest.raises(ConfigError, match="^failed after making the folders"):
        writable_folders({"out": tmp_path / "d" / "c" / ".." / "f2"}, then=fail)
    assert (tmp_path / "d").is_dir() and not list((tmp_path / "d").iterdir())


def test_a_renderer_checks_its_settings_and_outlives_a_failed_drawing(finished_run):
    "B59 B60 B45 (pass 31): share=0 killed the drawing thread and idle() never returned; so did a draw that raised; nan means."
    from zo_gpt.ablation import ablated
    from zo_gpt.figures import Renderer
    for kw, what in (({"share": 0}, "share"), ({"share": -1}, "share"), ({"min_gap": float("nan")}, "min_gap")):
        with pytest.raises(ConfigError, match=f"^{what} must be"):
            Renderer(lambda: None, **kw)
    calls = []
    def draw():
        calls.append(1)
        if len(calls) == 1: raise ZeroDivisionError("a bug in the learner's draw")
    r = Renderer(draw, min_gap=0)
    r.ask()
    with pytest.raises(ZeroDivisionError, match="a bug in the learner's draw"):
        r.idle(60)                                      # raised where it was asked for, once, and the thread draws on
    r.ask()
    assert r.idle(60) and len(calls) == 2
    r.close()
    model, _ = load_model(finished_run, device="cpu")
    with pytest.raises(ConfigError, match=r"^means must be head_means\(model, batches\): finite numbers"):
        with ablated(model, [0], torch.full((model.config.n_head, model.config.n_embd // model.config.n_head), float("nan"))): pass


def test_pass_32s_findings(tiny_data, tmp_path):
    "B3 B4 B13 B41 (pass 32): a side that is no side, batches that cannot fit, a stray library on PYTHONPATH, callbacks that are not."
    import subprocess, sys
    from zo_gpt.config import settings_text
    from zo_gpt.train import new_run, take_step, read_back
    with pytest.raises(ConfigError, match=r"^side must be 0 \(the checkpoint's\) or 1 \(now\), got 7"):
        settings_text({"lr": (1, 2)}, side=7)                                                            # B3: an IndexError
    data = load_dataset(tiny_data)
    huge = make_config("cpu", {"data_dir": str(tiny_data), "block_size": 32, "batch_size": 10**6, "eval_batches": 10**6})
    with pytest.raises(ConfigError, match=r"^eval_batches=1,000,000 of batch_size=1,000,000 x block_size=32 needs about"):
        fixed_batches(data.val, huge, torch.device("cpu"))                                               # B4: 24 GB, then killed
    with pytest.raises(ConfigError, match=r"^batch_size=1,000,000,000 x block_size=32 needs about"):
        get_batch(data.val, 32, 10**9, torch.Generator(), torch.device("cpu"))
    cfg = make_config("cpu", {"data_dir": str(tiny_data), "out_dir": str(tmp_path / "r"), "block_size": 32, "batch_size": 4,
                              "n_embd": 16, "eval_batches": 1, "max_iters": 4})
    state = new_run(cfg, data, torch.device("cpu"))
    for step in (lambda: take_step(state, [print]), lambda: read_back(state, [print])):
        with pytest.raises(ConfigError, match=r"^callbacks must be a list of Callback objects"):          # B41: an AttributeError
            step()                                                                                        # at the first hook
    (tmp_path / "fake").mkdir(); (tmp_path / "fake" / "tqdm.py").write_text("raise ImportError('a stray tqdm')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-c", "import zo_gpt, sys; sys.exit(zo_gpt.run())", "train", f"--out_dir={tmp_path / 'r2'}"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)                 # B13: a page of
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]                             # traceback
    assert f"{tmp_path / 'fake' / 'tqdm.py'} failed as it loaded (ImportError: a stray tqdm); it is on PYTHONPATH" in r.stderr


def test_numbers_as_numpy_and_fractions_write_them_are_read_and_sizes_below_zero_are_refused():
    "B1, B2, B11 (pass 35): a negative size passed check_memory; numpy's bool was refused where the text 'False' was read; 1/3.0 was not a number."
    import argparse
    from zo_gpt.cli import _number
    from zo_gpt.data import check_memory
    assert make_config("cpu", {"bias": np.bool_(False)}).bias is False
    with pytest.raises(ConfigError, match=r"^n_embd must be int, got np.True_$"): make_config("cpu", {"n_embd": np.bool_(True)})
    assert [_number(t) for t in ("1/3.0", "0.5/1.5", "2/3")] == [1 / 3, 1 / 3, 2 / 3]
    for text in ("1/0", "1/", "/3", "two/3"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a number"): _number(text)
    for size in (-5, float("nan"), True, "3"):
        with pytest.raises(ConfigError, match=r"^nbytes must be a number of bytes, 0 or more"): check_memory("x", size)
    check_memory("x", 0)
