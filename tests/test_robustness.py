"""Bad and unusual inputs, as a hostile new user would try them: every one ends with exit code 1 or 2 and a one- or
two-line message that names the problem, never a traceback; run folders are never mixed, resume is exact, and a
dataset is what its meta.json says."""
import json
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL

from zo_gpt.cli import main
from zo_gpt.config import TrainConfig, make_config
from zo_gpt.helpers import ConfigError, DatasetError, TrainingError
from zo_gpt.tokens import DataConfig, load_dataset, prepare
import zo_gpt.tokens as tokens_mod
from zo_gpt.train import MetricsLog, fit

CLI = str(Path(sys.executable).parent / "zo-gpt")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data, tiny_gpt2_data, finished_run):
    "Datasets, a finished run (4 steps on data, SMALL), and damaged copies of them: copies of the session's own."
    w = tmp_path_factory.mktemp("world")
    shutil.copytree(tiny_data, w / "data")                           # 200 sequences of 60 words, compact vocabulary
    prepare(DataConfig(n_seq=200, seq_len=60, seed=2, vocab="compact"), w / "data2", verbose=False)
    shutil.copytree(tiny_gpt2_data, w / "gpt2")
    shutil.copytree(finished_run, w / "done")
    (w / "file").write_text("not a folder")
    (w / "nockpt").mkdir(); (w / "nockpt" / "metrics.jsonl").write_text('{"kind": "train", "iter": 1}\n')  # killed before its first checkpoint
    (w / "empty").mkdir()
    def damaged(name, edit):
        d = w / name
        shutil.copytree(tiny_data, d)
        edit(d)
    def edit_p(d):
        m = json.loads((d / "meta.json").read_text()); m["config"]["p"] = 0.5; (d / "meta.json").write_text(json.dumps(m))
    damaged("meta_p", edit_p)
    def swap_ids(d):  # two token ids swapped in the tokens table: training would learn the wrong mapping
        m = json.loads((d / "meta.json").read_text()); t = m["tokens"]
        t[2]["id"], t[3]["id"] = t[3]["id"], t[2]["id"]; (d / "meta.json").write_text(json.dumps(m))
    damaged("meta_tokens", swap_ids)
    def edit_key(key, value):
        def edit(d):
            m = json.loads((d / "meta.json").read_text()); m[key] = value; (d / "meta.json").write_text(json.dumps(m))
        return edit
    damaged("meta_eot", edit_key("eot_id", 3))
    damaged("meta_vocab", edit_key("vocab_size", 9))
    damaged("meta_old", edit_key("format", "zo_gpt dataset 1"))
    damaged("meta_list", lambda d: (d / "meta.json").write_text("[]"))
    damaged("meta_empty", lambda d: (d / "meta.json").write_text("{}"))
    damaged("meta_dir", lambda d: ((d / "meta.json").unlink(), (d / "meta.json").mkdir()))
    damaged("short_bin", lambda d: (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:-2]))
    ckpt = (w / "done" / "ckpt.pt").read_bytes()
    for name, content in {"ck_empty": b"", "ck_random": os.urandom(5000), "ck_truncated": ckpt[: len(ckpt) // 2],
                          "ck_raw_pickle": pickle.dumps({"model": {}})}.items():
        (w / name).mkdir(); (w / name / "ckpt.pt").write_bytes(content)
    (w / "ck_pickle").mkdir(); torch.save({"model": Path("x")}, w / "ck_pickle" / "ckpt.pt")   # a foreign object
    (w / "ck_keys").mkdir(); torch.save({"model": {}}, w / "ck_keys" / "ckpt.pt")
    (w / "ck_mismatch").mkdir()
    c = torch.load(w / "done" / "ckpt.pt", weights_only=True); c["config"]["n_embd"] = 64
    torch.save(c, w / "ck_mismatch" / "ckpt.pt")
    good = torch.load(w / "done" / "ckpt.pt", weights_only=True)
    for name, key, value in (("ck_iter", "iter", "7"), ("ck_rng", "rng", {}), ("ck_config", "config", "abc"),
                             ("ck_history", "history", {"train": [{"iter": 1}], "val": []}), ("ck_table", "tokens_table", []),
                             ("ck_table_keys", "tokens_table", [{"id": 0}]),
                             ("ck_steps", "history", {**good["history"], "train": good["history"]["train"][:2]})):   # H132
        shutil.copytree(w / "done", w / name)                            # a whole run whose checkpoint has one bad value
        torch.save({**good, key: value}, w / name / "ckpt.pt")
    for name, file in (("fifo_ckpt", "ckpt.pt"), ("fifo_summary", "summary.json")):
        shutil.copytree(w / "done", w / name); (w / name / file).unlink(); os.mkfifo(w / name / file)   # never opened: no hang
    damaged("no_meta", lambda d: (d / "meta.json").unlink())             # an interrupted prepare: token files, no meta.json
    damaged("meta_huge", lambda d: os.truncate(d / "meta.json", 2 * 2**20))   # sparse: read only up to zo_gpt's bound
    shutil.copytree(w / "done", w / "summary_huge"); os.truncate(w / "summary_huge" / "summary.json", 2 * 2**20)
    shutil.copytree(w / "nockpt", w / "ck_zip")                          # a zip, but not one torch wrote: nothing resumes it
    shutil.copytree(w / "done", w / "ck_link"); (w / "ck_link" / "ckpt.pt").unlink()      # H138: on a backup disk, not mounted now
    (w / "ck_link" / "ckpt.pt").symlink_to(w / "unmounted" / "ckpt.pt")
    with zipfile.ZipFile(w / "ck_zip" / "ckpt.pt", "w") as z: z.writestr("notes.txt", "mine")
    return w


def cases(w):
    d, g = f"--data_dir={w / 'data'}", f"--data_dir={w / 'gpt2'}"
    run = lambda name, *a: ["train", d, f"--out_dir={w / name}", "--max_iters=4", "--eval_interval=2", *SMALL, *a]
    return [
        # prepare
        (["prepare", "--out", ""], 2, "out must name a folder"),
        (["prepare", "--out", str(w / "file")], 2, "is a file, not a folder; choose another folder"),
        (["prepare", "--out", "/proc/zo_gpt"], 2, "not a writable folder"),
        (["prepare", "--out", str(w / "huge"), "--seq-len", str(10 ** 12)], 2, "TB of memory"),
        (["prepare", "--out", str(w / "huge"), "--n-seq", str(10 ** 11), "--seq-len", "1000"], 2, "TB on disk"),
        (["prepare", "--out", str(w / "x"), "--p", "nan"], 2, "p must be a probability"),
        (["prepare", "--out", str(w / "x"), "--p", "two thirds"], 2, "not a number: 'two thirds' (see zo-gpt prepare --help)"),
        (["prepare", "--out", str(w / "x"), "--vocab", "bytes"], 2, "invalid choice: 'bytes'"),
        (["bake"], 2, "invalid choice: 'bake'"),
        (["prepare", "--out", str(w / "x"), "--p", "inf"], 2, "p must be a probability"),
        (["prepare", "--out", str(w / "x"), "--val-frac", "0"], 2, "val_frac must be a probability"),
        (["prepare", "--out", str(w / "meta_list")], 1, "not a zo_gpt dataset description"),
        # settings
        (run("s1", "--lr=inf"), 2, "lr must be a finite number"),
        (run("s2", "--lr=nan"), 2, "lr must be a finite number"),
        (run("s3", "--grad_clip=nan"), 2, "grad_clip must be a finite number"),
        (run("s4", "--weight_decay=nan"), 2, "weight_decay must be a finite number"),
        (run("s5", "--min_lr=nan"), 2, "min_lr must be a finite number"),
        (run("s6", "--beta1=1.5"), 2, "beta1 must be in [0, 1)"),
        (run("s7", "--beta2=-0.1"), 2, "beta2 must be in [0, 1)"),
        (run("s8", "--dropout=1"), 2, "dropout must be in [0, 1)"),
        (run("s9", "--n_head=3"), 2, "must be a multiple of n_head=3"),
        (run("s10", "--init_std=0"), 2, "init_std must be > 0"),
        (run("s11", "--max_iters=2.5"), 2, "max_iters must be int"),
        (run("s12", "--batch_sise=4"), 2, "did you mean 'batch_size'"),
        (run("s12b", "--LR=0.1"), 2, "unknown setting 'LR'; did you mean 'lr'?"),   # B6 (pass 43)
        (run("s13", "--max_iters"), 2, "expected --key=value"),
        (run("m1", "--n_embd=1048576", "--n_head=1"), 2, "make a model of about 13,194,178,330,624 parameters"),
        (run("s14", "--min_lr=1", "--lr=0.001"), 2, "min_lr=1.0 must be <= lr=0.001"),
        (run("s15", "--seed=18446744073709551615"), 2, "seed must be an integer from 0 to 4,294,967,295"),
        (run("s16", "--final_tokens=1"), 2, "final_tokens=1 leaves fewer than two blocks"),
        (run("s17", "--eval_batches=100000000000"), 2, "eval_batches=100,000,000,000 of batch_size=4 x block_size=32 would score"),
        (["prepare", "--out", str(w / "x"), "--seed", str(2 ** 64)], 2, "seed must be an integer from 0 to"),
        # devices and folders
        (run("d1", "--device=cuda"), 2, "CUDA devices"),
        (run("d2", "--device=mps"), 2, "MPS is not available"),
        (run("d3", "--device=meta"), 2, "is not one zo_gpt trains on"),
        (run("d4", "--device=toaster"), 2, "is not a device torch knows"),
        (["train", d, f"--out_dir={w / 'file'}", *SMALL], 2, "is a file, not a folder"),
        (["train", d, "--out_dir=/proc/zo_gpt", *SMALL], 2, "not a writable folder"),
        (["train", d, "--out_dir=", *SMALL], 2, "out_dir must name a folder"),
        # datasets
        (["train", f"--data_dir={w / 'nowhere'}", f"--out_dir={w / 'r1'}", *SMALL], 1, "does not exist; make a dataset there with `zo-gpt prepare"),
        (["train", f"--data_dir={w / 'empty'}", f"--out_dir={w / 'r2'}", *SMALL], 1, "holds no dataset"),
        (["train", g, f"--out_dir={w / 'r3'}", *SMALL], 2, "was made for vocab='gpt2'"),
        (["train", d, f"--out_dir={w / 'r4'}", "--block_size=9000"], 2, "needs more than 18001 tokens"),
        (["train", f"--data_dir={w / 'meta_p'}", f"--out_dir={w / 'r5'}", *SMALL], 1, "was changed after the dataset was made"),
        (["train", f"--data_dir={w / 'meta_list'}", f"--out_dir={w / 'r6'}", *SMALL], 1, "not a zo_gpt dataset description"),
        (["train", f"--data_dir={w / 'meta_p'}", f"--out_dir={w / 'r5'}", *SMALL], 1,          # its arguments cannot be trusted
         "--vocab compact --force`, adding any of --n-seq, --seq-len, --p, --seed, --val-frac it was made with"),
        (["train", f"--data_dir={w / 'meta_tokens'}", f"--out_dir={w / 'r10'}", *SMALL], 1, "was changed after the dataset was made"),
        (["train", f"--data_dir={w / 'meta_huge'}", f"--out_dir={w / 'r16'}", *SMALL], 1,
         "meta.json is not a zo_gpt dataset description (it holds 2.1 MB; zo_gpt writes a few kB there)"),
        (["train", f"--data_dir={w / 'meta_eot'}", f"--out_dir={w / 'r11'}", *SMALL], 1, "was changed after the dataset was made"),
        (["train", f"--data_dir={w / 'meta_vocab'}", f"--out_dir={w / 'r12'}", *SMALL], 1, "was changed after the dataset was made"),
        (["train", f"--data_dir={w / 'meta_old'}", f"--out_dir={w / 'r13'}", *SMALL], 1, "made by another version of zo_gpt"),
        (["train", f"--data_dir={w / 'meta_empty'}", f"--out_dir={w / 'r7'}", *SMALL], 1, "not a zo_gpt dataset description"),
        (["train", f"--data_dir={w / 'meta_dir'}", f"--out_dir={w / 'r8'}", *SMALL], 1, "meta.json is a folder where zo_gpt keeps a file: move it away"),
        (["train", f"--data_dir={w / 'short_bin'}", f"--out_dir={w / 'r9'}", *SMALL], 1, "truncated or corrupt"),
        # run folders and checkpoints
        (run("done", "--resume"), 1, "finished at step 4 of 4: there is nothing to resume"),
        (run("done", "--resume", "--max_iters=8"), 1, "finished at step 4 and cannot be continued with other settings (max_iters=8)"),
        (["train", f"--data_dir={w / 'data2'}", f"--out_dir={w / 'done'}", "--max_iters=4", "--eval_interval=2", *SMALL, "--resume"],
         1, "trained on another dataset"),
        (run("empty", "--resume"), 1, "no checkpoint at"),
        (run("nockpt"), 2, "it ended before its first checkpoint, so nothing can resume or reuse it: replace it with --force"),
        (run("nockpt", "--resume"), 1, "ended before its first checkpoint: start again with --force (overwrite=True) instead of --resume"),
        (run("done"), 2, "holds a run (ckpt.pt, metrics.jsonl, summary.json, loss.png); it finished: --reuse (reuse=True) reads its results, or replace it with --force"),
        (run("ck_empty", "--resume"), 1, "the file is empty"),
        (run("ck_random", "--resume"), 1, "it is not a torch checkpoint (the zip file torch.save writes)"),
        (run("ck_truncated", "--resume"), 1, "the file is truncated or damaged; nothing can resume it: start again with --force (overwrite=True) instead of --resume"),
        (run("ck_pickle", "--resume"), 1, "objects other than tensors"),
        (run("ck_raw_pickle", "--resume"), 1, "cannot be loaded"),
        (run("ck_keys", "--resume"), 1, "is not a zo_gpt checkpoint: it lacks optimizer"),
        (run("ck_iter", "--resume"), 1, "is not a zo_gpt checkpoint: its iter is str, not int"),
        (run("ck_rng", "--resume"), 1, "is not a zo_gpt checkpoint: its rng lacks a random state"),
        (run("ck_config", "--resume"), 1, "is not a zo_gpt checkpoint: its config is str, not dict"),
        (run("ck_history", "--resume"), 1, "its history holds a step or an evaluation without its numbers"),
        (run("ck_steps", "--resume"), 1, "its history records 2 steps, not the 4 it has taken"),
        (run("ck_link", "--resume"), 2, "ckpt.pt is a symbolic link to"),                      # not a run that never saved one
        (run("ck_link"), 2, "which does not exist now: mount what holds it, or move the link away, then start the run again"),
        (run("fifo_ckpt"), 2, "ckpt.pt is not a file (a pipe, a device) where zo_gpt keeps a file: move it away"),
        (run("fifo_ckpt", "--resume"), 2, "ckpt.pt is not a file (a pipe, a device) where zo_gpt keeps a file: move it away"),
        (run("fifo_summary"), 2, "summary.json is not a file (a pipe, a device) where zo_gpt keeps a file: move it away"),
        (run("summary_huge"), 2, "holds a run"),
        (run("ck_zip"), 2, "its ckpt.pt is no torch checkpoint (empty or damaged), so nothing can resume it"),
        (["train", f"--data_dir={w / 'no_meta'}", f"--out_dir={w / 'r14'}", *SMALL], 1, "--vocab compact --force`"),
        (["train", f"--data_dir={w / 'short_bin'}", f"--out_dir={w / 'r15'}", *SMALL], 1,
         "--vocab compact --n-seq 200 --seq-len 60 --p 0.6666666666666666 --seed 1337 --val-frac 0.1 --force`"),
        (run("boom", "--lr=1e9", "--eval_interval=1"), 1, "at iteration"),
        # sample and profile
        (["sample", "--run", str(w / "nowhere")], 1, "no checkpoint at"),
        (["sample", "--run", str(w / "ck_pickle")], 1, "objects other than tensors"),
        (["sample", "--run", str(w / "ck_mismatch")], 1, "do not fit its configuration"),
        (["sample", "--run", str(w / "ck_table")], 1, "tokens_table must be a checkpoint's table of its tokens"),
        (["sample", "--run", str(w / "ck_table_keys")], 1, "tokens_table must be a checkpoint's table of its tokens"),
        (["export", str(w / "ck_table"), str(w / "x_export")], 1, "tokens_table must be a checkpoint's table of its tokens"),
        (["sample", "--run", str(w / "done"), "--tokens", "0"], 2, "--tokens must be from 1 to 1,000,000, got 0"),
        (["sample", "--run", str(w / "done"), "--tokens", str(10 ** 12)], 2, "--tokens must be from 1 to 1,000,000"),
        (["sample", "--run", str(w / "file")], 1, "is a file, not a run folder"),
        (["profile", "--out", str(w / "p4"), "--vocab=compact", d, "--steps", str(10 ** 9)], 2, "steps must be from 1 to 100"),
        (["sample", "--run", str(w / "done"), "--seed", "99999999999999999999999"], 2, "seed must be an integer from 0 to"),
        (["profile", "--out", "", "--vocab=compact", d], 2, "out must name a folder"),
        (["profile", "--out", str(w / "file"), "--vocab=compact", d], 2, "is a file, not a folder"),
        (["profile", "--out", str(w / "p1"), d], 2, "was made for vocab='compact'"),
        (["profile", "--out", str(w / "p2"), "--vocab=compact", d, "--block_size=9000"], 2, "needs more than"),
        (["profile", "--out", str(w / "p3"), "--vocab=compact", d, "--device=cuda"], 2, "CUDA devices"),
    ]


def test_bad_inputs_end_in_one_clear_line(world, capsys):
    failures = []
    for argv, code, needle in cases(world):
        capsys.readouterr()
        try: got = main(argv)
        except SystemExit as e: got = e.code
        err = capsys.readouterr().err.strip()
        lines = [l for l in err.replace("\r", "\n").splitlines() if l.strip() and not l.startswith("train:")]  # not the bar
        if got != code or needle not in err or not 1 <= len(lines) <= 2 or "Traceback" in err:
            failures.append((argv, code, got, needle, err[-500:]))
    assert not failures, "\n".join(map(str, failures))
    print(f"{len(cases(world))} bad inputs, each one clear line")


def test_the_last_good_checkpoint_is_good(world, tmp_path):
    boom = tmp_path / "boom"                                       # a run that diverges: its loss turns NaN
    assert main(["train", f"--data_dir={world / 'data'}", f"--out_dir={boom}", "--max_iters=4", "--eval_interval=1",
                 "--lr=1e9", *SMALL]) == 1
    ck = torch.load(boom / "ckpt.pt", weights_only=True) if (boom / "ckpt.pt").exists() else None
    if ck is not None:  # written only before the first non-finite evaluation
        assert all(torch.isfinite(v).all() for v in ck["model"].values())
        assert all(r["loss"] == r["loss"] for r in ck["history"]["val"])
    for line in (boom / "metrics.jsonl").read_text().splitlines() if ck is not None else []:   # one that failed before any checkpoint leaves none
        json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))
    assert ck is not None or not boom.exists()


def test_python_api_refuses_what_is_not_a_config():
    for bad in (None, {"lr": 0.1}, "cpu"):
        with pytest.raises(ConfigError, match="cfg must be a TrainConfig"):
            fit(bad)
    with pytest.raises(ConfigError, match="lr must be float, got '0.1'"):
        TrainConfig(lr="0.1")
    with pytest.raises(ConfigError, match="callbacks must be a list of Callback objects"):
        fit(make_config("cpu"), callbacks=[print])
    for kw, needle in (({"data": "data/zero_one-compact"}, "data must be a Dataset"), ({"resume": "yes"}, "resume must be True or False"),
                       ({"callbacks": MetricsLog()}, "callbacks must be a list of Callback objects")):
        with pytest.raises(ConfigError, match=needle): fit(make_config("cpu"), **kw)
    from zo_gpt.checkpoint import load_model
    for bad in (None, 123, ""):
        with pytest.raises(ConfigError, match="run_dir must name a run folder"): load_model(bad)


def test_settings_from_python_and_papermill_are_checked_before_any_work(tmp_path):
    assert make_config("cpu", '{"max_iters": 5}').max_iters == 5              # papermill's -p passes text
    from zo_gpt.profiling import profile_config
    assert profile_config("cpu", '{"max_iters": 3}').max_iters == 3
    e = ConfigError("max_iters must be a positive integer, got 0")
    assert e._render_traceback_() == ["ConfigError: max_iters must be a positive integer, got 0"]   # one line in IPython
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZO_GPT_TRACEBACK", "1")
        with pytest.raises(NotImplementedError): e._render_traceback_()      # IPython then shows the whole traceback
    for bad, needle in (("max_iters=5", "got the text 'max_iters=5'"), ([("max_iters", 5)], "got list"), (5, "got int")):
        with pytest.raises(ConfigError, match=f"overrides must be a dict of settings.*{needle}"):
            make_config("cpu", bad)
    c = DataConfig(n_seq=np.int64(200), seq_len=np.int32(60), p=np.float64(2 / 3), seed=np.uint16(3), vocab="compact")
    assert [type(v) for v in (c.n_seq, c.seq_len, c.p, c.seed)] == [int, int, float, int]
    assert prepare(c, tmp_path / "ds", verbose=False)["config"]["n_seq"] == 200    # numpy scalars reach meta.json as numbers
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="final_tokens=1 leaves"):
        fit(make_config("cpu", {"data_dir": str(tmp_path / "ds"), "out_dir": str(tmp_path / "r"), "final_tokens": 1}),
            callbacks=[MetricsLog()], verbose=False)
    assert not (tmp_path / "r").exists()                                        # refused before any file was written


def test_run_folders_are_never_mixed(world, tmp_path):
    d = f"--data_dir={world / 'data'}"
    args = ["train", d, f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert main(args + ["--lr=0.02"]) == 2                                          # refused: nothing touched
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert main(args + ["--lr=0.02", "--force"]) == 0                                # replaced, all files of one run
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert summary["config"]["lr"] == ckpt["config"]["lr"] == 0.02
    kinds = [json.loads(l)["kind"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 4 and kinds.count("final") == 1
    mode = stat.S_IMODE((tmp_path / "run" / "ckpt.pt").stat().st_mode)
    umask = os.umask(0); os.umask(umask)
    assert mode == 0o666 & ~umask                                                   # not mkstemp's 0600
    (tmp_path / "run" / ".ckpt.pt.abc123.tmp").write_bytes(b"x" * 100)             # as a SIGKILL mid-write leaves
    assert main(args + ["--lr=0.02", "--max_iters=6", "--force"]) == 0
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_tampered_meta_is_refused_and_rebuilt_on_force(world, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(world / "data", d)                              # 200 sequences of 60 words, compact vocabulary
    meta = json.loads((d / "meta.json").read_text()); meta["config"]["p"] = 0.5
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="was changed after the dataset was made"):
        load_dataset(d)
    (d / "meta.json").write_text("[]")
    assert main(["prepare", "--out", str(d), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact", "--force"]) == 0
    assert load_dataset(d).meta["config"]["p"] == pytest.approx(2 / 3)


def losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in l]


INTERRUPTED = ["--max_iters=1500", "--eval_interval=100", *SMALL]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def uninterrupted(world):
    "The run the interrupted ones must match, bit for bit: made once for both signals."
    out = world / "uninterrupted"
    full = subprocess.run([CLI, "train", f"--out_dir={out}", f"--data_dir={world / 'data'}", *INTERRUPTED],
                          capture_output=True, text=True, env=ENV)
    assert full.returncode == 0, full.stderr[-2000:]
    return out


@pytest.mark.xdist_group("interrupted")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "sigterm", "hangup"])
def test_an_interrupted_run_resumes_exactly(world, uninterrupted, tmp_path, sig):
    "Ctrl-C, SIGTERM or a hang-up (a closed terminal) at a random moment, then --resume: the same losses and final measures, bit for bit, as an uninterrupted run."
    args, cut = [f"--data_dir={world / 'data'}", *INTERRUPTED], tmp_path / "cut"
    p = subprocess.Popen([CLI, "train", f"--out_dir={cut}", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    while not (cut / "metrics.jsonl").exists() or '"kind": "train"' not in (cut / "metrics.jsonl").read_text():
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 1.5))                   # the run takes about 4 s: mostly mid-training
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err[-2000:]
    if p.returncode == 130:                                 # stopped: a checkpoint of the last completed step
        stopped = int(err.split("stopped at step ")[1].split()[0])
        assert torch.load(cut / "ckpt.pt", weights_only=True)["iter"] == stopped
        r = subprocess.run([CLI, "train", f"--out_dir={cut}", *args, "--resume"], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr[-2000:]
    else:                                                   # the signal came during the final evaluation, which finished
        assert p.returncode == 0, err[-2000:]
    assert losses(cut) == losses(uninterrupted)
    a, b = (json.loads((run / "summary.json").read_text())["final"] for run in (cut, uninterrupted))
    assert {k: a[k] for k in ("loss", "kl", "kl_se", "bayes")} == {k: b[k] for k in ("loss", "kl", "kl_se", "bayes")}


def test_everyday_paths_tilde_a_closed_pipe_and_profile_reports(world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    cwd = tmp_path / "cwd"; cwd.mkdir()
    zo = lambda *a: subprocess.run([CLI, *map(str, a)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    r = zo("prepare", "--out=~/data", "--n-seq", "200", "--seq-len", "60", "--vocab", "compact")
    assert r.returncode == 0 and (tmp_path / "data" / "meta.json").exists(), r.stderr[-2000:]
    r = zo("train", "--data_dir=~/data", "--out_dir=~/run", "--max_iters=2", "--eval_interval=2", *SMALL)
    assert r.returncode == 0 and (tmp_path / "run" / "summary.json").exists(), r.stderr[-2000:]
    assert zo("sample", "--run=~/run", "--tokens", "5").returncode == 0
    assert not (cwd / "~").exists()                                    # `~` is the home folder, never a folder named ~
    # a reader that goes away (`zo-gpt ... | head`) is not a failure
    p = subprocess.Popen([CLI, "prepare", "--out", tmp_path / "piped", "--n-seq", "200", "--seq-len", "60", "--vocab", "compact"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()
    err = p.stderr.read().decode(); p.wait(timeout=300)
    assert p.returncode == 0 and "Traceback" not in err and "Broken pipe" not in err, err
    assert (tmp_path / "piped" / "meta.json").exists()
    # profile: its report is not replaced unless asked, and its own settings are named
    prof = ["profile", "--out", tmp_path / "prof", f"--data_dir={world / 'data'}", "--vocab=compact", "--block_size=32", "--n_embd=16"]
    assert zo(*prof, "--steps=1").returncode == 0
    before = (tmp_path / "prof" / "table.txt").read_bytes()
    for extra, needle in ((["--steps=1"], "holds a profile report (table.txt, ops.csv, categories.png, trace.json, events.json)"),
                          (["--steps=0", "--force"], "steps must be from 1 to 100"),
                          (["--steps=1", "--force", "--compile=True"], "compile=True: profile measures the model")):
        r = zo(*prof, *extra)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (tmp_path / "prof" / "table.txt").read_bytes() == before
    assert zo(*prof, "--steps=1", "--force").returncode == 0


def test_a_full_disk_while_a_checkpoint_is_written_is_one_line(world, tmp_path, monkeypatch, capsys):
    import zo_gpt.checkpoint
    def full(obj, f, *a, **kw):
        Path(f).write_bytes(b"x" * 10)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(zo_gpt.checkpoint.torch, "save", full)
    code = main(["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL])
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith(("train:", "final evaluation:"))]
    assert code == 1 and len(err) == 1 and f"could not write {tmp_path / 'run' / 'ckpt.pt'}: the write failed (" in err[0], err
    assert re.search(r"\(\S+ [kMGT]?B free on its disk\); the run stopped at step 2: nothing of it is kept, so run it again as it was", err[0]), err[0]
    assert not (tmp_path / "run").exists()                                   # the half-written file is gone, and the folder it made
    monkeypatch.undo()                                                       # B32 B34 (pass 23): the advice works without --force
    assert main(["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]) == 0


def test_a_reader_that_goes_away_ends_the_printing_never_the_run(world, tmp_path):
    "`zo-gpt train ... 2>&1 | grep -m1 device`: the run goes on to its end, and an unfinished run never exits 0."
    def started(out, iters):
        p = subprocess.Popen([CLI, "train", f"--data_dir={world / 'data'}", f"--out_dir={out}", f"--max_iters={iters}",
                              "--eval_interval=20", *SMALL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
        while b"device:" not in p.stdout.readline(): pass
        p.stdout.close()                                           # the reader goes away after the first line it wanted
        return p
    p = started(tmp_path / "done", 40)
    assert p.wait(timeout=300) == 0
    assert json.loads((tmp_path / "done" / "summary.json").read_text())["interrupted"] is False
    assert len(losses(tmp_path / "done")) == 40
    p = started(tmp_path / "cut", 100000)
    while not (tmp_path / "cut" / "ckpt.pt").exists(): time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=300) == 130                              # stopped, and its exit code says so
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["interrupted"] is True


def test_the_environment_is_checked_before_any_work(world, tmp_path):
    run = lambda out, env: subprocess.run([CLI, "train", f"--data_dir={world / 'data'}", f"--out_dir={out}", "--max_iters=2",
                                           "--eval_interval=2", *SMALL], capture_output=True, text=True, env={**ENV, **env}, timeout=300)
    r = run(tmp_path / "rank", {"RANK": "1", "LOCAL_RANK": "1"})   # left in the shell by a cluster job
    assert r.returncode == 2 and "RANK='1' is set, as torchrun sets it, but WORLD_SIZE" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "rank").exists()
    r = run(tmp_path / "ünïcødé", {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "ascii"})   # an ASCII locale
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert (tmp_path / "ünïcødé" / "summary.json").exists()


def test_a_run_that_died_before_its_first_checkpoint_is_replaced_as_its_refusal_says(world, tmp_path):
    shutil.copytree(world / "nockpt", tmp_path / "run")
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 2 and main(args + ["--resume"]) == 1
    assert main(args + ["--force"]) == 0                                       # what both refusals advise


def test_a_checkpoint_is_reported_only_with_its_own_summary_and_metrics(world, tmp_path):
    """A finished checkpoint copied into a stopped run's folder: not "finished: results in summary.json"; --resume, which
    would write that run's files over the stopped run's, is refused (B13, pass 44) until they are moved away, and then
    writes them from the checkpoint."""
    run, d = tmp_path / "run", f"--data_dir={world / 'data'}"
    args = ["train", d, f"--out_dir={run}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(["train", d, f"--out_dir={run}", "--max_iters=4", "--eval_interval=2", "--lr=0.02", *SMALL]) == 0
    summary = json.loads((run / "summary.json").read_text()); summary["interrupted"] = True
    (run / "summary.json").write_text(json.dumps(summary))                    # as a stopped run leaves it
    shutil.copy(world / "done" / "ckpt.pt", run / "ckpt.pt")                 # another run's checkpoint, finished
    record = {n: (run / n).read_bytes() for n in ("metrics.jsonl", "summary.json", "loss.png")}
    assert main(args + ["--resume"]) == 1 and {n: (run / n).read_bytes() for n in record} == record
    (kept := tmp_path / "kept").mkdir()
    for n in record: (run / n).rename(kept / n)
    assert main(args + ["--resume"]) == 0
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run_id"] == ckpt["run_id"] and summary["final"] == ckpt["history"]["final"] and not summary["interrupted"]
    assert losses(run) == [r["loss"] for r in ckpt["history"]["train"]] == losses(world / "done")
    assert main(args + ["--resume"]) == 1                                      # now it is finished, with its own files


def test_a_file_size_limit_while_a_checkpoint_is_written_names_the_cause(world, tmp_path):
    "Under `ulimit -f`, torch's own message ('unexpected pos ...') hides the cause; the command names the limit."
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)); from zo_gpt.cli import main; "
            f"sys.exit(main(['train', '--data_dir={world / 'data'}', '--out_dir={tmp_path / 'run'}', '--max_iters=2', "
            "'--eval_interval=2', '--n_embd=64', '--n_head=2', '--block_size=32', '--batch_size=4', '--final_tokens=0', '--eval_batches=1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    err = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith(("train:", "final evaluation:"))]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"could not write {tmp_path / 'run' / 'ckpt.pt'}: the write failed; files may be at most 20 kB here (ulimit -f)" in err[-1], err



def test_a_file_size_limit_while_the_metrics_are_written_names_the_file(world, tmp_path):
    "`ulimit -f 1` (I191): metrics.jsonl passes the limit before the checkpoint does; the line names it and the limit."
    r = subprocess.run(["bash", "-c", f"ulimit -f 1; exec {shlex.quote(sys.executable)} -m zo_gpt.cli train --data_dir={world / 'data'} "
                        f"--out_dir={tmp_path / 'run'} --max_iters=40 --eval_interval=10 {' '.join(SMALL)}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].endswith(f"failed: File too large; files may be at most 1.02 kB here (ulimit -f): {tmp_path / 'run' / 'metrics.jsonl'}"), r.stderr[-500:]

@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop root's right to read any folder")
def test_a_run_folder_that_cannot_be_read_is_refused_by_name(world, tmp_path):
    "Mode 333 (write and search, no read): the lock opens the folder to read it; refused up front, naming out_dir."
    out = tmp_path / "r"; out.mkdir(); out.chmod(0o333)
    nocap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-dac_override,-dac_read_search,-fowner"]
    if subprocess.run([*nocap, "true"], capture_output=True).returncode: pytest.skip("setpriv cannot drop capabilities here")
    try:
        r = subprocess.run([*nocap, sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={world / 'data'}", f"--out_dir={out}",
                            "--max_iters=2", "--eval_interval=2", *SMALL], capture_output=True, text=True, timeout=300)
    finally: out.chmod(0o755)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip() == (f"zo-gpt train: error: out_dir='{out}' is a folder this process cannot read (Permission denied); "
                                "give it read permission (chmod u+r), or choose another folder")


def last_line(capsys) -> str:
    "The one message line a command printed to stderr, past its progress bars."
    err = capsys.readouterr().err.replace("\r", "\n")
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("train:", "final evaluation:", "prepare"))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def hint(line:str) -> list:
    "The arguments of the `zo-gpt ...` command a message gives."
    return shlex.split(re.search(r"`zo-gpt ([^`]*)`", line).group(1))


@pytest.mark.parametrize("where, name, extra", [("run", "loss.png", []), ("run", "ckpt.pt", []), ("run", "metrics.jsonl", ["--resume"]),
                                                ("data", "train.bin", []), ("data", "meta.json", [])])
def test_a_folder_where_a_file_goes_is_refused_with_advice_that_works(world, tmp_path, capsys, where, name, extra):
    "Neither --force nor prepare --force removes a folder (it may hold a user's work): the refusal says to move it away."
    shutil.copytree(world / "data", tmp_path / "data")
    (tmp_path / where).mkdir(exist_ok=True); (tmp_path / where / name).unlink(missing_ok=True)
    (tmp_path / where / name).mkdir(); (tmp_path / where / name / "mine.txt").write_text("work")
    args = ["train", f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    for more in (extra, ["--force"]):
        assert main(args + more) in (1, 2)
        line = last_line(capsys)
        assert f"{tmp_path / where / name} is a folder where zo_gpt keeps a file: move it away" in line and "`" not in line, line
    if where == "data":
        assert main(["prepare", "--out", str(tmp_path / "data"), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact", "--force"]) == 2
        assert "move it away" in last_line(capsys)
    assert (tmp_path / where / name / "mine.txt").read_text() == "work"         # nothing of it was lost
    shutil.move(tmp_path / where / name, tmp_path / "moved")                   # as the message says
    if where == "data": assert main(["prepare", "--out", str(tmp_path / "data"), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact", "--force"]) == 0
    assert main(args + (["--force"] if where == "run" else [])) == 0


def test_resuming_with_another_setting_or_dataset_gives_a_command_that_works(tmp_path, capsys):
    "A stopped run: its checkpoint records the dataset's arguments, so a dataset replaced or removed can be made again."
    from zo_gpt.train import Callback, Checkpointer, RunFiles
    class StopAt2(Callback):
        def on_step(self, state, record): state.stop = state.iter >= 2
    made = ["prepare", "--out", str(tmp_path / "ds"), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact"]
    assert main(made) == 0
    cfg = make_config("cpu", {"data_dir": str(tmp_path / "ds"), "out_dir": str(tmp_path / "run"), "max_iters": 4,
                              "eval_interval": 2, "block_size": 32, "batch_size": 4, "n_embd": 16, "eval_batches": 1, "final_tokens": 2000})
    assert fit(cfg, callbacks=[MetricsLog(), Checkpointer(), RunFiles(), StopAt2()], verbose=False).interrupted
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL, "--resume"]
    assert main([*args, "--max_iters=8"]) == 1
    assert "max_iters=4 there, 8 now; resume it with its settings (--max_iters=4), start again with --force" in last_line(capsys)
    capsys.readouterr()
    assert main(made + ["--seed", "7", "--force"]) == 0 and main(args) == 1   # the run's dataset replaced by another
    line = last_line(capsys)
    assert "trained on another dataset" in line and "--seed 1337" in line, line
    assert main(hint(line)) == 0
    shutil.rmtree(tmp_path / "ds")                                             # and removed
    assert main(args) == 1
    line = last_line(capsys)
    assert "holds no dataset; the run in" in line and "--n-seq 200 --seq-len 60" in line, line
    assert main(hint(line)) == 0 and main(args) == 0


def test_a_checkpoint_that_cannot_be_written_names_it_and_says_resume_works(world, tmp_path, monkeypatch, capsys):
    "A folder made unwritable during the run (chattr +i): the file asked for is named, not its temporary, and --resume works."
    import zo_gpt.folders
    real, calls = zo_gpt.folders.tempfile.mkstemp, []
    def refused(*a, prefix="", **kw):
        if prefix.startswith(".ckpt.pt") and (calls.append(1) or len(calls) > 1):
            raise PermissionError(1, "Operation not permitted", str(tmp_path / "run" / f"{prefix}x1y2.tmp"))
        return real(*a, prefix=prefix, **kw)
    monkeypatch.setattr(zo_gpt.folders.tempfile, "mkstemp", refused)
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args) == 1
    assert last_line(capsys) == (f"zo-gpt train: failed: could not write {tmp_path / 'run' / 'ckpt.pt'}: Operation not permitted; the "
                                 "run stopped at step 4: --resume (resume=True) continues it from its last checkpoint once the "
                                 "checkpoint can be written there")
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root's chattr to make a folder no one can write")
def test_a_finished_run_in_a_folder_no_one_can_write_is_reused(world, tmp_path, capsys):
    shutil.copytree(world / "done", tmp_path / "done")
    if subprocess.run(["chattr", "+i", tmp_path / "done"], capture_output=True).returncode: pytest.skip("chattr +i is refused here")
    try:
        args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'done'}", "--max_iters=4", "--eval_interval=2", *SMALL]
        assert main(args + ["--reuse"]) == 0 and "reused the finished run" in capsys.readouterr().out
        assert main(args + ["--force"]) == 2 and "is not a writable folder" in last_line(capsys)   # what would write is refused
    finally: subprocess.run(["chattr", "-i", tmp_path / "done"])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root's chattr")
def test_an_append_only_folder_is_named_before_anything_is_written_there(world, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    if subprocess.run(["chattr", "+a", tmp_path / "a"], capture_output=True).returncode: pytest.skip("chattr +a is refused here")
    try:
        args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'a'}", "--max_iters=4", "--eval_interval=2", *SMALL]
        assert main(args) == 2 and "is an append-only folder (chattr +a; lsattr -d shows it)" in last_line(capsys)
        assert list((tmp_path / "a").iterdir()) == []                    # nothing made there: nothing could be removed
        args = ["train", f"--data_dir={tmp_path / 'nope'}", f"--out_dir={tmp_path / 'a' / 'new'}", *SMALL]   # a run folder made in it
        assert main(args) == 2 and f"would be made in '{tmp_path / 'a'}', an append-only folder" in last_line(capsys)
        assert list((tmp_path / "a").iterdir()) == []
    finally: subprocess.run(["chattr", "-a", tmp_path / "a"])


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root's chattr")
@pytest.mark.parametrize("what", ["export", "profile", "prepare"])
def test_a_replacement_that_cannot_finish_keeps_the_old_files_whole(world, tmp_path, what):
    "--force over an export, a report or a dataset one of whose files is immutable: refused, the old files all there, unchanged."
    out, d = tmp_path / "out", f"--data_dir={world / 'data'}"
    cmd = {"export": ["export", str(world / "done"), str(out)],
           "profile": ["profile", "--out", str(out), "--steps", "1", d, "--vocab=compact", "--n_embd=16", "--batch_size=2", "--block_size=32"],
           "prepare": ["prepare", "--out", str(out), "--n-seq", "20", "--seq-len", "30", "--vocab", "compact"]}[what]
    assert main(cmd) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and not f.name.startswith(".")}
    fixed = out / {"export": "model.safetensors", "profile": "table.txt", "prepare": "val.bin"}[what]   # one the command replaces late
    if subprocess.run(["chattr", "+i", fixed], capture_output=True).returncode: pytest.skip("chattr +i is refused here")
    try:
        again = cmd + (["--force"] if what != "prepare" else ["--force", "--seed", "7"])
        assert main(again) == 1
    finally: subprocess.run(["chattr", "-i", fixed])
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and not f.name.startswith(".")} == before
    assert not [f for f in out.iterdir() if f.name.startswith(".zo_gpt-stage")]


def test_exported_files_are_readable_as_any_other_file(world, tmp_path):
    old = os.umask(0o022)
    try: assert main(["export", str(world / "done"), str(tmp_path / "x")]) == 0
    finally: os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "x").iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes   # not the 0600 of safetensors' writer


def test_a_file_size_limit_while_profiling_names_the_limit(world, tmp_path):
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000)); from zo_gpt.cli import main; "
            f"sys.exit(main(['profile', '--out', '{tmp_path / 'p'}', '--steps', '1', '--data_dir={world / 'data'}', '--vocab=compact', "
            "'--n_embd=16', '--batch_size=2', '--block_size=32']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == ("zo-gpt profile: failed: the profiler could not write its trace: files may be at "
                                                 "most 50 kB here (ulimit -f); raise the limit (ulimit -f unlimited) and profile again")


def test_a_finished_run_missing_a_result_file_is_told_resume_writes_it_again(world, tmp_path, capsys):
    "loss.png gone from a finished run: --reuse cannot report it, and the refusal offers --resume, which restores it."
    shutil.copytree(world / "done", tmp_path / "run"); (tmp_path / "run" / "loss.png").unlink()
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--reuse"]) == 2
    assert "it finished, but its loss.png, summary.json or metrics.jsonl is missing or not its own: --resume" in last_line(capsys)
    assert main(args + ["--resume"]) == 0 and (tmp_path / "run" / "loss.png").is_file()
    assert losses(tmp_path / "run") == losses(world / "done")                  # nothing trained again
    assert main(args + ["--reuse"]) == 0


def test_a_finished_run_without_its_checkpoint_or_its_final_evaluation_is_told_what_works(world, tmp_path, capsys):
    "Its checkpoint deleted, a finished run is not called one that never had one; without a final evaluation, --resume adds one."
    shutil.copytree(world / "done", tmp_path / "run"); (tmp_path / "run" / "ckpt.pt").unlink()
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--reuse"]) == 2 and "it finished, but its ckpt.pt is gone, so nothing can resume or reuse it" in last_line(capsys)
    assert main(args + ["--resume"]) == 1 and "the run there finished, but its ckpt.pt is gone: start again with --force" in last_line(capsys)
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'nofinal'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--final_eval=False"]) == 0
    assert main(args + ["--reuse"]) == 2 and "it finished without a final evaluation: --resume (resume=True) adds one" in last_line(capsys)
    assert main(args + ["--resume"]) == 0 and json.loads((tmp_path / "nofinal" / "summary.json").read_text())["final"]["kl"] > 0
    assert main(args + ["--reuse"]) == 0


def test_a_finished_run_asked_to_go_on_with_other_settings_is_told_what_works(world, tmp_path, capsys):
    "--resume --max_iters=40 on a run that finished its 4: not 'resume it with its settings', which would do nothing."
    shutil.copytree(world / "done", tmp_path / "run")
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--eval_interval=2", *SMALL]
    assert main(args + ["--max_iters=8", "--resume"]) == 1
    assert "finished at step 4 and cannot be continued with other settings (max_iters=8); start again with --force" in last_line(capsys)
    assert main(args + ["--max_iters=8", "--force"]) == 0


def test_one_validation_block_per_evaluation_has_no_standard_error_and_the_run_still_ends(world, tmp_path):
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'one'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--batch_size=1"]) == 0 and (tmp_path / "one" / "loss.png").is_file()


def moving_list(folder:Path, names:list) -> str:
    "The lines of a staging folder's .moving for the files `names` of `folder`, as a swap writes them: 'inode name'."
    return "".join(f"{os.stat(folder / n).st_ino} {n}\n" for n in names)


def test_what_a_killed_command_left_in_a_staging_folder_goes_with_the_next_command_there(world, tmp_path):
    "A prepare --force killed outright leaves its hidden staging folder: a run that reads the dataset removes it."
    shutil.copytree(world / "data", tmp_path / "ds")
    (tmp_path / "ds" / ".zo_gpt-stage-killed").mkdir(); (tmp_path / "ds" / ".zo_gpt-stage-killed" / "train.bin").write_bytes(b"x" * 4096)
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and not list((tmp_path / "ds").glob(".zo_gpt-stage-*"))


def test_a_swap_that_a_killed_command_began_is_undone_by_the_next_command_there(world, tmp_path):
    "prepare --force killed (SIGKILL) with the old train.bin set aside and none placed: a run that reads the folder puts it back."
    shutil.copytree(world / "data", tmp_path / "ds")
    stage = tmp_path / "ds" / ".zo_gpt-stage-killed"; stage.mkdir()
    os.replace(tmp_path / "ds" / "train.bin", stage / "train.bin.old"); (stage / "train.bin").write_bytes(b"half of a new one")
    (stage / ".moving").write_text(moving_list(stage, ["train.bin"]))
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and not list((tmp_path / "ds").glob(".zo_gpt-stage-*"))
    assert (tmp_path / "ds" / "train.bin").read_bytes() == (world / "data" / "train.bin").read_bytes()


def test_a_swap_that_a_killed_command_finished_is_kept_by_the_next_command_there(world, tmp_path):
    "prepare --force killed after its last file went in, before its staging folder went: the next command keeps the new set."
    shutil.copytree(world / "data", tmp_path / "ds")
    stage = tmp_path / "ds" / ".zo_gpt-stage-killed"; stage.mkdir()
    (stage / ".moving").write_text(moving_list(tmp_path / "ds", ["train.bin", "val.bin", "meta.json"]))   # what the swap listed, all moved in
    for n in ("train.bin", "val.bin", "meta.json"): (stage / f"{n}.old").write_bytes(b"the set it replaced")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and not list((tmp_path / "ds").glob(".zo_gpt-stage-*"))
    assert (tmp_path / "ds" / "train.bin").read_bytes() == (world / "data" / "train.bin").read_bytes()


def test_a_swap_into_a_new_folder_that_a_killed_command_began_leaves_nothing_of_it(world, tmp_path):
    "prepare killed after two of its three files went into a new folder (B136): the next command takes them out, and works."
    d = tmp_path / "d"; stage = d / ".zo_gpt-stage-killed"; stage.mkdir(parents=True)
    for n in ("train.bin", "val.bin"): shutil.copy(world / "data" / n, d / n)            # moved in, with no old file
    shutil.copy(world / "data" / "meta.json", stage / "meta.json")                      # not yet
    (stage / ".moving").write_text(moving_list(d, ["train.bin", "val.bin"]) + moving_list(stage, ["meta.json"]))
    assert main(["prepare", "--out", str(d), "--n-seq", "20", "--seq-len", "30", "--vocab", "compact"]) == 0
    assert json.loads((d / "meta.json").read_text())["config"]["n_seq"] == 20 and not list(d.glob(".zo_gpt-stage-*"))


def test_a_staging_folders_list_names_only_files_of_its_own_folder(world, tmp_path):
    "A .moving made or copied by hand that names a path out of the folder (H158): nothing outside the dataset folder goes."
    shutil.copytree(world / "data", tmp_path / "ds"); (tmp_path / "victim").mkdir(); (tmp_path / "victim" / "ckpt.pt").write_text("mine")
    stage = tmp_path / "ds" / ".zo_gpt-stage-q"; stage.mkdir(); (stage / "train.bin").write_text("x")
    (stage / ".moving").write_text(f"train.bin\n../victim/ckpt.pt\n{tmp_path / 'victim' / 'ckpt.pt'}\n")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and (tmp_path / "victim" / "ckpt.pt").read_text() == "mine"


@pytest.mark.parametrize("moving", ["", None, "../victim/train.bin\n", "fifo"])
def test_a_cut_swap_whose_list_is_empty_missing_or_odd_gets_its_old_files_back(world, tmp_path, moving):
    """A power cut can leave .moving empty (no fsync yet), a stage of an older version has none (H150), and a hand-made one
    may name only paths outside (H170) or be a pipe (H172): the old set comes back, nothing outside is touched, nothing hangs."""
    shutil.copytree(world / "data", tmp_path / "ds"); (tmp_path / "victim").mkdir(); (tmp_path / "victim" / "train.bin").write_text("mine")
    stage = tmp_path / "ds" / ".zo_gpt-stage-killed"; stage.mkdir()
    if moving == "fifo": os.mkfifo(stage / ".moving")
    elif moving is not None: (stage / ".moving").write_text(moving)
    for n in ("train.bin", "val.bin", "meta.json"): os.replace(tmp_path / "ds" / n, stage / f"{n}.old")
    (tmp_path / "ds" / "train.bin").write_bytes(b"the new one, moved in")
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}",
                        "--max_iters=2", "--eval_interval=2", *SMALL], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not list((tmp_path / "ds").glob(".zo_gpt-stage-*")), r.stderr[-2000:]
    assert all((tmp_path / "ds" / n).read_bytes() == (world / "data" / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json"))
    assert (tmp_path / "victim" / "train.bin").read_text() == "mine"


@pytest.mark.parametrize("listed", ["inode", "name"])
def test_a_staging_folders_list_takes_back_only_the_files_the_swap_moved_in(world, tmp_path, listed):
    """A .moving made by hand (H190) that lists a user's file of the dataset folder, by its name or with another inode: the
    file was never moved in by a swap, so it stays where it is, and the staged set-aside files come back."""
    shutil.copytree(world / "data", tmp_path / "ds"); (tmp_path / "ds" / "notes.txt").write_text("mine")
    stage = tmp_path / "ds" / ".zo_gpt-stage-q"; stage.mkdir(); (stage / "val.bin").write_text("x")
    (stage / ".moving").write_text("val.bin\nnotes.txt\n" if listed == "name" else f"1 val.bin\n{os.stat(tmp_path / 'ds').st_ino} notes.txt\n")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and (tmp_path / "ds" / "notes.txt").read_text() == "mine"
    assert not list((tmp_path / "ds").glob(".zo_gpt-stage-*"))


def test_a_removal_that_a_kill_cuts_short_leaves_the_old_run_whole(world, tmp_path):
    """train --force killed (SIGKILL) after it set aside one of the old run's files (B190): the next command in the folder
    puts it back, so the run there is whole, not three files of it; setting them aside is all or none."""
    run = tmp_path / "run"
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={run}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0
    before = {n: (run / n).read_bytes() for n in ("ckpt.pt", "metrics.jsonl", "summary.json", "loss.png")}
    code = ("import os, sys; from zo_gpt.folders import set_aside; from zo_gpt.checkpoint import RUN_FILES; real = os.replace\n"
            "def replace(a, b): real(a, b); os._exit(9)   # killed after the first file is set aside\n"
            f"os.replace = replace; set_aside({str(run)!r}, list(RUN_FILES), 'ckpt.pt', RUN_FILES)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    assert list(run.glob(".zo_gpt-stage-*")) and not (run / "ckpt.pt").exists()          # the kill's state: the key file goes first
    assert main(args + ["--reuse"]) == 0                                                 # the run there, whole again
    assert {n: (run / n).read_bytes() for n in before} == before and not list(run.glob(".zo_gpt-stage-*"))


@pytest.mark.parametrize("how", ["nan", "file size"])
def test_force_that_fails_before_its_first_checkpoint_keeps_the_old_run(world, tmp_path, capsys, how):
    """train --force over a finished run, the new run failing before its first checkpoint (B25, B26, pass 38): a loss that
    is nan, a checkpoint over the file-size limit. The finished run was deleted as the new one began, and the folder was
    left empty; it is now set aside until the new run has a checkpoint, put back on the failure, and the line says so."""
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={run}", *SMALL, "--max_iters=4", "--eval_interval=2", "--force"]
    if how == "nan": assert main(args + ["--lr=3e37"]) == 1; line = last_line(capsys)
    else:
        r = subprocess.run(["bash", "-c", f"ulimit -f 50; exec {shlex.quote(CLI)} " + shlex.join(args + ["--seed=9"])],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
    assert line.endswith(f"; {run} keeps the run that was there before --force (overwrite=True)"), line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before                   # every file as it was, nothing else
    assert main(args[:-1] + ["--reuse"]) == 0                                          # and it serves as before


def test_force_stopped_at_once_before_its_first_checkpoint_keeps_the_old_run(world, tmp_path, capsys, monkeypatch):
    """train --force over a finished run, stopped by a second Ctrl-C inside a step before its first checkpoint (B27, pass
    39): no checkpoint can be written of a step cut in half, and the finished run was dropped as the new one ended. It is
    put back, and the line says so; a run stopped after its checkpoint says to --resume in place of --force (B25)."""
    import zo_gpt.train as train_mod
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    real, calls = train_mod.train_step, []
    def step(*a, **k):
        if len(calls) == 2: raise KeyboardInterrupt   # inside the third step: the second Ctrl-C
        calls.append(1); return real(*a, **k)
    monkeypatch.setattr(train_mod, "train_step", step)
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={run}", *SMALL, "--max_iters=200", "--eval_interval=100", "--force"]
    assert main(args) == 130
    assert last_line(capsys) == (f"stopped at step 2 of 200, before its first checkpoint: nothing of it is kept, and {run} keeps "
                                 "the run that was there before --force (overwrite=True)")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    calls.clear(); args[-2] = "--eval_interval=1"                                   # stopped after its first checkpoint
    assert main(args) == 130 and last_line(capsys).endswith("continue with the same arguments, --resume in place of --force")
    monkeypatch.undo()
    assert main(args[:-1] + ["--resume"]) == 0                                      # the advice works


def test_force_through_fit_without_a_checkpointer_keeps_the_old_run_when_stopped(world, tmp_path):
    "fit(overwrite=True) with callbacks that write no checkpoint, stopped: nothing of the new run can go on, so the old one stays."
    from zo_gpt.train import Callback, RunFiles, RunStopped
    class Stop(Callback):
        def on_step(self, state, record): state.interrupt = True
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    from zo_gpt.config import parse_overrides
    cfg = make_config("cpu", parse_overrides([*SMALL, f"--data_dir={world / 'data'}", f"--out_dir={run}", "--max_iters=20", "--eval_interval=10"]))
    with pytest.raises(RunStopped, match=f"nothing of it is kept, and {run} keeps the run that was there before --force"):
        fit(cfg, callbacks=[MetricsLog(), RunFiles(), Stop()], overwrite=True, verbose=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("old", ["all", "checkpoint only"])
def test_force_killed_before_or_after_its_first_checkpoint(world, tmp_path, checkpoint, old):
    """train --force killed (SIGKILL) while its run had no checkpoint yet: the next command (here load_model, as sample and
    export read a run) puts the old run back whole, and removes the new run's files that the old run did not have.
    Killed once its run had a checkpoint, before the old run was dropped: the new run stays, and the old one goes."""
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    if old != "all":
        for n in ("metrics.jsonl", "summary.json", "loss.png"): (run / n).unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = ("import os; from pathlib import Path; from zo_gpt.folders import set_aside; from zo_gpt.checkpoint import RUN_FILES\n"
            f"run = Path({str(run)!r}); set_aside(run, [n for n in RUN_FILES if (run / n).exists()], 'ckpt.pt', RUN_FILES)\n"
            "(run / 'metrics.jsonl').write_text('{\"kind\": \"train\", \"iter\": 1, \"loss\": 9.0}\\n')\n"
            + (f"import shutil; shutil.copy({str(world / 'done' / 'ckpt.pt')!r}, run / 'ckpt.pt')\n" if checkpoint else "")
            + "os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    assert list(run.glob(".zo_gpt-stage-*"))
    from zo_gpt.checkpoint import load_model
    load_model(run)
    assert not list(run.glob(".zo_gpt-*"))
    now = {p.name for p in run.iterdir()}
    if checkpoint: assert now == {"ckpt.pt", "metrics.jsonl"}                          # the new run's, stopped at its checkpoint
    else: assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_putting_back_a_set_aside_run_cut_short_is_finished_by_the_next_command(world, tmp_path, monkeypatch):
    """A stop while the old run of a failed --force comes back: its ckpt.pt comes back last, so until it is in, the folder
    still reads as the new run's failure, and the next command puts the rest back; the new run's own file goes."""
    from zo_gpt.checkpoint import RUN_FILES
    from zo_gpt.folders import end_aside, set_aside
    run = tmp_path / "run"; shutil.copytree(world / "done", run); (run / "metrics.jsonl").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    set_aside(run, [p.name for p in run.iterdir()], "ckpt.pt", RUN_FILES)
    (run / "metrics.jsonl").write_text("the new run's\n")
    real, calls = os.replace, []
    def replace(src, dst):
        if ".zo_gpt-stage-" in str(src) and (calls.append(src) or len(calls) == 2): raise KeyboardInterrupt
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt): end_aside(run)
    monkeypatch.undo()
    assert [Path(c).name for c in calls] != ["ckpt.pt.old"] and not (run / "ckpt.pt").exists()
    assert end_aside(run) and {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("cut_at", [1, 2, 3, 4, 5])
def test_a_settle_cut_short_is_finished_by_the_next_command(world, tmp_path, monkeypatch, cut_at):
    """A stop (or a kill) while a command puts back what a killed prepare set aside (B173, B174): each step leaves a state the
    next command reads the same way, and it finishes the job; no old file put back is taken for a new one."""
    shutil.copytree(world / "data", tmp_path / "ds")
    ds, stage = tmp_path / "ds", tmp_path / "ds" / ".zo_gpt-stage-killed"; stage.mkdir()
    for n in ("train.bin", "val.bin", "meta.json"): os.replace(ds / n, stage / f"{n}.old")
    for n in ("train.bin", "val.bin"): (ds / n).write_bytes(b"new, moved in")
    (stage / "meta.json").write_text("{}")
    (stage / ".moving").write_text(moving_list(ds, ["train.bin", "val.bin"]) + moving_list(stage, ["meta.json"]))
    real, calls = os.replace, []
    def replace(src, dst):
        if ".zo_gpt-stage-" in f"{src}{dst}":
            calls.append(src)
            if len(calls) == cut_at: raise KeyboardInterrupt   # the stop, just before this step of the settle
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    args = ["train", f"--data_dir={ds}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 130
    monkeypatch.undo()
    assert main(args) == 0 and not list(ds.glob(".zo_gpt-stage-*"))
    assert all((ds / n).read_bytes() == (world / "data" / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json"))


def test_a_staging_folder_that_is_a_link_is_left_alone(world, tmp_path):
    "A link named like a staging folder, to a user's folder (H171): zo_gpt never made it, and moves nothing out of it."
    shutil.copytree(world / "data", tmp_path / "ds"); (tmp_path / "keep").mkdir(); (tmp_path / "keep" / "thesis.tex.old").write_text("mine")
    (tmp_path / "ds" / ".zo_gpt-stage-keep").symlink_to(tmp_path / "keep")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and (tmp_path / "keep" / "thesis.tex.old").read_text() == "mine" and not (tmp_path / "ds" / "thesis.tex").exists()


@pytest.mark.parametrize("what", ["export", "prepare", "profile"])
def test_a_stop_that_comes_once_the_files_are_in_place_does_not_make_the_command_say_interrupted(world, tmp_path, monkeypatch, what):
    "A Ctrl-C while the staging folder is removed, after the swap: the new files are in, so the command ends as done (rc 0)."
    out, d = tmp_path / "out", f"--data_dir={world / 'data'}"
    cmd = {"export": ["export", str(world / "done"), str(out)],
           "profile": ["profile", "--out", str(out), "--steps", "1", d, "--vocab=compact", "--n_embd=16", "--batch_size=2", "--block_size=32"],
           "prepare": ["prepare", "--out", str(out), "--n-seq", "20", "--seq-len", "30", "--vocab", "compact"]}[what]
    real = tempfile.TemporaryDirectory.cleanup
    def cleanup_then_stop(self):
        if Path(self.name).name.startswith(".zo_gpt-stage-"): os.kill(os.getpid(), signal.SIGINT)
        real(self)
    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", cleanup_then_stop)
    assert main(cmd) == 0
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # the command's handlers are gone with it


def test_a_library_that_a_bad_environment_variable_stops_as_a_command_loads_it_is_one_line(world, tmp_path):
    "torch loads inside the command (train), and reads TORCH_LOGS as it does: a bad value is one line naming torch."
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'r'}", *SMALL],
                       env={**os.environ, "TORCH_LOGS": "bogus"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert r.stderr.startswith("zo-gpt train: failed: torch could not load (Invalid log settings: bogus") and not (tmp_path / "r").exists()
    assert r.stderr.endswith("; check TORCH_LOGS='bogus'\n")             # the variable named, whatever the package's name



def test_a_bar_format_tqdm_cannot_fill_is_one_line_before_any_work(tmp_path):
    "TQDM_BAR_FORMAT is read as each bar is made, not as tqdm loads (E130): the command draws one first, before any work."
    for fmt, why in (("{bogus}", "KeyError: 'bogus'"), ("{l_bar}{bar", "ValueError: expected '}' before end of string")):
        r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "prepare", "--out", str(tmp_path / "d"), "--n-seq", "20", "--seq-len", "10",
                            "--vocab", "compact"], env={**os.environ, "TQDM_BAR_FORMAT": fmt}, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stderr == (f"zo-gpt prepare: failed: tqdm cannot draw a progress bar ({why}); "
                                                  f"check TQDM_BAR_FORMAT={fmt!r}\n"), r.stderr[-2000:]
        assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("cxx", ["missing", "broken", "no_python_headers"])
def test_compile_without_a_working_cpp_compiler_is_refused_before_any_work(world, tmp_path, cxx):
    """torch.compile builds C++ on the CPU at the first step: a run builds a tiny module as torch does, first. A compiler that
    is not there (E133), or one that answers --version but builds nothing (E151: no Python headers), is one line."""
    fake = tmp_path / "g++"
    fake.write_text('#!/bin/sh\ncase "$*" in *--version*) exec g++ --version;; esac\necho "fatal error: Python.h: No such file" >&2; exit 1\n')
    if cxx == "no_python_headers":   # E176: g++ without python3-dev builds plain C++, not the kernels, which include Python.h
        fake.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in *.cpp) grep -q Python.h "$a" && { echo "fatal error: Python.h: No such file" >&2; exit 1; };; esac; done\nexec g++ "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "CXX": "/nonexistent/g++" if cxx == "missing" else str(fake), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'r'}",
                        "--compile=True", *SMALL], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert r.stderr.startswith("zo-gpt train: error: compile=True needs a C++ compiler on the CPU") and not (tmp_path / "r").exists()


def test_a_compiled_run_on_the_cpu_prints_only_its_own_lines(world, tmp_path):
    """B71 (pass 30): compile=True with a working compiler trains, with none of torch's logging on stderr: the input check
    reads no value inside the compiled graph (a graph break each step) and the profiler's named ranges are left out there."""
    if shutil.which(os.environ.get("CXX", "g++")) is None: pytest.skip("no C++ compiler: compile=True is refused (the test above)")
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'r'}",
                        "--compile=True", "--max_iters=2", "--eval_interval=2", *SMALL],
                       env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and (tmp_path / "r" / "summary.json").is_file(), r.stderr[-2000:]
    bars = re.sub(r"(train|final evaluation):[^\r\n]*[\r\n]?", "", r.stderr)   # tqdm's bars, and nothing else
    assert not bars.strip(), bars[-2000:]


def test_a_matplotlibrc_that_asks_for_latex_does_not_stop_the_figures(world, tmp_path):
    "text.usetex in a learner's matplotlibrc, with no LaTeX installed (E150): zo_gpt's figures set their text without it."
    (tmp_path / "matplotlibrc").write_text("text.usetex: True\n")
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={world / 'data'}", "--out_dir=r", "--max_iters=2",
                        "--eval_interval=2", *SMALL], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "r" / "loss.png").stat().st_size > 0, r.stderr[-2000:]

def test_the_profilers_own_clean_up_error_does_not_hide_memory_running_out():
    "Under ulimit -v the profiler fails to start, and its exit then raises an AssertionError of its own: the MemoryError is what counts."
    from zo_gpt.profiling import _interrupt_wins
    with pytest.raises(MemoryError):
        with _interrupt_wins():
            try: raise MemoryError
            except MemoryError: raise AssertionError("Profiler must be initialized before starting trace")


def test_a_stopped_profile_leaves_no_part_of_a_report(world, tmp_path, monkeypatch, capsys):
    "Stopped once its trace is written (as by a hang-up), profile removes what it wrote: the same command then works."
    import zo_gpt.profiling
    from zo_gpt.profiling import REPORT_FILES
    def stopped(*a, **k): raise KeyboardInterrupt
    args = ["profile", "--out", str(tmp_path / "p"), "--steps", "1", f"--data_dir={world / 'data'}", "--vocab=compact",
            "--n_embd=16", "--batch_size=2", "--block_size=32"]
    with monkeypatch.context() as m:
        m.setattr(zo_gpt.profiling, "write_report", stopped)
        assert main(args) == 130
    assert not [n for n in REPORT_FILES if (tmp_path / "p" / n).exists()]
    assert main(args) == 0 and all((tmp_path / "p" / n).exists() for n in REPORT_FILES)
    before = {n: (tmp_path / "p" / n).read_bytes() for n in REPORT_FILES}
    with monkeypatch.context() as m:   # stopped while replacing it: the old report stays whole
        m.setattr(zo_gpt.profiling, "write_report", stopped)
        assert main(args + ["--force"]) == 130
    assert {n: (tmp_path / "p" / n).read_bytes() for n in REPORT_FILES} == before
    assert sorted(f.name for f in (tmp_path / "p").iterdir() if f.name.startswith(".zo_gpt-profile")) == []


@pytest.mark.parametrize("flag, which, kib, words", [("v", "RLIMIT_AS", 500_000, "address-space limit"),
                                                      ("d", "RLIMIT_DATA", 100_000, "data-size limit")])
def test_an_address_space_limit_too_small_to_load_torch_is_one_line(tmp_path, flag, which, kib, words):
    """Under ulimit -v 500000 torch's allocator would end the process as torch loads (std::bad_alloc, exit 134): refused
    first. Under ulimit -d 100000 (B79, pass 22), the same, ended by 'cannot allocate memory for thread-local data'."""
    import resource
    def limit(): resource.setrlimit(getattr(resource, which), (kib << 10, kib << 10))
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "explain", "nowhere"], preexec_fn=limit, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert r.stderr.startswith(f"zo-gpt explain: failed: the {words} (ulimit -{flag} {kib}) is too small to load torch"), r.stderr
    for args in (["prepare", "--out", str(tmp_path / "ds"), "--n-seq", "20", "--seq-len", "30", "--vocab", "compact"], ["--version"], ["train", "--help"]):
        r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", *args], preexec_fn=limit, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (args, r.stderr[-2000:])              # commands that never load torch are not refused


def test_under_an_address_space_limit_near_the_need_a_run_ends_whole_or_in_one_line_with_nothing_left(tiny_data, tmp_path):
    """B21 (pass 35): under ulimit -v 660000 to 730000 a run passed the check, then ended in OpenBLAS's own line, or a
    MemoryError traceback, with a half-written loss.png.tmp and an owner record left. Across the limits where that
    happened, at both thread counts: each run finishes with its files, or is refused in one line before any folder is made."""
    import resource
    for threads, kib in [(2, 700_000), (2, 720_000), (2, 760_000), (2, 820_000), (2, 900_000), (2, 960_000), (1, 740_000), (1, 820_000)]:
        out = tmp_path / f"r{threads}_{kib}"
        r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={tiny_data}", f"--out_dir={out}", *SMALL,
                            "--max_iters=4", "--eval_interval=2"], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (kib << 10, kib << 10)))
        if r.returncode == 0: assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "loss.png", "metrics.jsonl", "summary.json"], kib
        else:
            assert r.returncode == 1 and r.stderr.count("\n") == 1 and not out.exists(), (threads, kib, r.stderr[-2000:])
            assert r.stderr.startswith(f"zo-gpt train: failed: the address-space limit (ulimit -v {kib}) is too small to load torch and run"), r.stderr


@pytest.mark.parametrize("flag, which, kib", [("v", "RLIMIT_AS", 60_000), ("d", "RLIMIT_DATA", 50_000)])
def test_an_address_space_limit_too_small_to_load_numpy_is_one_line(tmp_path, monkeypatch, flag, which, kib):
    """I252: under ulimit -v 60000 numpy's OpenBLAS ends the process as numpy loads, with a line of its own, for every
    command (--version too): refused first, naming the limit; under ulimit -d 50000 (B79, pass 22) too. Out of memory as
    tiktoken loads is not a missing cache."""
    import resource
    def limit(): resource.setrlimit(getattr(resource, which), (kib << 10, kib << 10))
    for args in (["--version"], ["prepare", "--out", str(tmp_path / "ds"), "--vocab", "compact"]):
        r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", *args], preexec_fn=limit, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]
        assert f"(ulimit -{flag} {kib})" in r.stderr and "raise it" in r.stderr or f"raise the memory limit (now ulimit -{flag} {kib})" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    import tiktoken
    from zo_gpt.tokens import gpt2_encoding
    def no_memory(name): raise MemoryError
    monkeypatch.setattr(tiktoken, "get_encoding", no_memory)
    with pytest.raises(MemoryError): gpt2_encoding.__wrapped__()


def test_a_library_that_a_bad_environment_variable_stops_loading_is_one_line():
    "tqdm reads its TQDM_* variables as it is imported: a bad one is named in one line, not a traceback."
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", "--help"], env={**os.environ, "TQDM_MININTERVAL": "abc"},
                       capture_output=True, text=True, timeout=300)
    assert (r.returncode, r.stderr) == (1, "zo-gpt train: failed: tqdm could not load (could not convert string to float: 'abc'); "
                                           "check TQDM_MININTERVAL='abc'\n"), r.stderr[-2000:]


def test_a_library_that_cannot_load_is_one_line_a_bug_is_not_hidden(monkeypatch, capsys):
    "Under `ulimit -v` torch or PIL fail to map their shared objects: one line that says memory; a missing name stays a traceback."
    import zo_gpt.cli as cli
    def torch_fails(args, extra):
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object", name="_C", path="/venv/torch/_C.so")
    monkeypatch.setattr(cli, "_sample", torch_fails)
    assert main(["sample", "--run", "r"]) == 1
    assert last_line(capsys) == ("zo-gpt sample: failed: could not load torch (libtorch_cpu.so: failed to map segment from "
                                 "shared object): out of memory? close other programs and run it again")
    import resource
    monkeypatch.setattr(resource, "getrlimit", lambda which: (800_000 << 10, resource.RLIM_INFINITY))   # I212: ulimit -v 800000
    def no_memory(args, extra): raise MemoryError
    monkeypatch.setattr(cli, "_export", no_memory); monkeypatch.setattr(cli, "_train", no_memory)
    assert main(["export", "r", "out"]) == 1 and last_line(capsys) == "zo-gpt export: failed: ran out of memory; raise the memory limit (now ulimit -v 800000)"
    assert main(["train"]) == 1 and last_line(capsys).endswith("ran out of memory; raise the memory limit (now ulimit -v 800000) or try smaller settings")
    def bug(args, extra): raise ImportError("cannot import name 'nothing' from 'zo_gpt.model'")
    monkeypatch.setattr(cli, "_sample", bug)
    with pytest.raises(ImportError, match="cannot import name"): main(["sample", "--run", "r"])


def test_objects_that_cannot_be_freed_once_memory_ran_out_print_nothing(tmp_path):
    "Errors Python cannot raise (a __del__'s) print a bare 'MemoryError:' each once memory ran out; zo-gpt keeps them out."
    code = ("import sys; sys.argv = ['zo-gpt', 'explain', 'nowhere']; from zo_gpt import run; code = run()\n"
            "class Leaky:\n    def __del__(self): raise MemoryError\n"
            "class Buggy:\n    def __del__(self): raise ValueError('a real bug')\n"
            "Leaky(); Buggy(); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "MemoryError" not in r.stderr and "ValueError: a real bug" in r.stderr, r.stderr
    assert r.stderr.splitlines()[0].startswith("zo-gpt explain: failed:"), r.stderr


def test_a_file_size_limit_while_preparing_names_the_file_and_the_limit(tmp_path):
    "train.bin (363,600 bytes) passes `ulimit -f 100`, val.bin (40,400) does not: the line names train.bin and the limit."
    r = subprocess.run(["bash", "-c", f"ulimit -f 100; exec {shlex.quote(sys.executable)} -m zo_gpt.cli prepare --out ds "
                        "--n-seq 2000 --seq-len 100 --vocab compact"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("zo-gpt prepare: failed: File too large; files may be at most 102 kB here (ulimit -f): "
                                "ds/train.bin"), r.stderr
    assert not (tmp_path / "ds").exists()


def test_force_over_a_run_whose_file_cannot_go_keeps_the_old_run_whole(world, tmp_path, monkeypatch):
    "--force over a run whose loss.png is immutable (L170): the old run's files go all together or not at all."
    shutil.copytree(world / "done", tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    real = os.replace
    def replace(src, dst):
        if Path(src).name == "loss.png" and ".zo_gpt-stage-" in str(dst): raise PermissionError(1, "Operation not permitted", str(src))
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", "--seed=5", *SMALL]
    assert main(args + ["--force"]) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


@pytest.mark.parametrize("command", ["train", "prepare"])
def test_few_file_descriptors_are_one_line_that_is_not_a_lock(world, tmp_path, command):
    """ulimit -n 8 (I172) made the run take its own hold for another process's, whose hint (wait, another folder) cannot
    work; under ulimit -n 5 a prepare left its staged folder behind (B82, pass 22)."""
    import resource
    args = ([f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'r'}", *SMALL] if command == "train"
            else ["--out", str(tmp_path / "r"), "--n-seq", "4", "--seq-len", "20"])
    r = subprocess.run([CLI, command, *args], preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8)),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr == (f"zo-gpt {command}: failed: the limit on open files (ulimit -n 8) is too low: a zo-gpt "
                                              "command needs about 32; raise it (ulimit -n 1024)\n"), r.stderr[-2000:]
    assert not (tmp_path / "r").exists()


def test_a_small_stack_is_one_line_before_torch_loads(world, tmp_path):
    "ulimit -s 80 (B29, pass 33): torch ended the command with a segmentation fault as it loaded, and no word; prepare needs no torch."
    import resource
    small = lambda: resource.setrlimit(resource.RLIMIT_STACK, (96 << 10, resource.getrlimit(resource.RLIMIT_STACK)[1]))
    r = subprocess.run([CLI, "sample", "--run", str(world / "done"), "--tokens", "3"], preexec_fn=small, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr == ("zo-gpt sample: failed: the stack limit (ulimit -s 96) is too small to load torch safely: "
                                              "it needs about 128 KiB; raise it (ulimit -s 8192)\n"), r.stderr[-2000:]
    r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "d"), "--n-seq", "20", "--seq-len", "20", "--vocab", "compact"],
                       preexec_fn=small, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_resume_on_another_dataset_names_the_one_it_was_trained_on_and_replaces_none(world, tmp_path, capsys):
    """--resume given a learner's other dataset (C194): the hint names the folder the run was trained on where it still is,
    and, where it is gone, makes it again there; never a command that replaces the dataset given by mistake."""
    shutil.copytree(world / "data", tmp_path / "ds"); shutil.copytree(world / "data2", tmp_path / "other")
    args = ["train", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args + [f"--data_dir={tmp_path / 'ds'}"]) == 0
    assert main(args + [f"--data_dir={tmp_path / 'other'}", "--resume"]) == 1
    assert f"it is still in {tmp_path / 'ds'}: give --data_dir={tmp_path / 'ds'}" in last_line(capsys)
    shutil.rmtree(tmp_path / "ds")
    assert main(args + [f"--data_dir={tmp_path / 'other'}", "--resume"]) == 1
    line = last_line(capsys)
    assert f"zo-gpt prepare --out {tmp_path / 'ds'} " in line and "replaces" not in line and str(tmp_path / "other") + " " not in line.split("holds")[-1]


def test_the_default_dataset_folder_named_is_the_default(tmp_path, monkeypatch):
    "data_dir='data/zero_one-compact', as --help shows the preset's value (K193): made on first use, as when it is left out."
    import contextlib
    import zo_gpt.config
    from zo_gpt.config import held_dataset, make_config
    monkeypatch.setattr(zo_gpt.config, "DataConfig", lambda vocab: DataConfig(n_seq=50, seq_len=30, vocab=vocab))   # small, for the test
    monkeypatch.chdir(tmp_path)
    for data_dir in ("data/zero_one-compact", "./data//zero_one-compact/"):
        with contextlib.ExitStack() as reading:
            assert held_dataset(make_config("cpu", {"data_dir": data_dir}), None, reading).meta["config"]["n_seq"] == 50


def test_what_a_refusal_says_of_a_run_comes_from_its_checkpoint_not_its_summary(world, tmp_path, capsys):
    """A stopped run whose summary.json was edited to say it finished (C180) is told to continue; a finished one whose
    summary.json is damaged (H191, H201) is told that --resume writes it again. Each hint then works."""
    from zo_gpt.config import parse_overrides
    from zo_gpt.train import Callback, Checkpointer, MetricsLog, RunFiles, fit
    class Stop(Callback):
        def on_step(self, state, record):
            if state.iter == 2: os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C: the run stops after this step, and says so
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--eval_interval=2", *SMALL]
    fit(make_config("cpu", {**parse_overrides(args[1:]), "max_iters": 4}), callbacks=[MetricsLog(), Checkpointer(), RunFiles(), Stop()], verbose=False)   # as the command's
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["interrupted"] is True and capsys.readouterr()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "interrupted": False}))
    assert main(args + ["--max_iters=4", "--reuse"]) == 2 and "continue it with --resume (resume=True)" in last_line(capsys)
    assert main(args + ["--max_iters=4", "--resume"]) == 0
    (tmp_path / "run" / "summary.json").write_text("null")
    assert main(args + ["--max_iters=4", "--reuse"]) == 2
    assert "it finished, but its loss.png, summary.json or metrics.jsonl is missing or not its own: --resume" in last_line(capsys)
    assert main(args + ["--max_iters=4", "--resume"]) == 0 and main(args + ["--max_iters=4", "--reuse"]) == 0


def test_a_resume_that_forgets_its_data_dir_makes_no_default_dataset(world, tmp_path, capsys, monkeypatch):
    """C250: a stopped run trained on a dataset of its own, resumed without --data_dir where no default dataset is: it is
    not made (minutes of a prepare, then a refusal); the refusal names the run's dataset, and its hint works."""
    from zo_gpt.config import parse_overrides
    from zo_gpt.train import Callback, Checkpointer, RunFiles
    class StopAt2(Callback):
        def on_step(self, state, record): state.stop = state.iter >= 2
    monkeypatch.chdir(tmp_path)
    args = ["train", "--out_dir=run", "--max_iters=4", "--eval_interval=2", *SMALL, "--resume"]
    cfg = make_config("cpu", {**parse_overrides(args[1:-1]), "data_dir": str(world / "data")})
    assert fit(cfg, callbacks=[MetricsLog(), Checkpointer(), RunFiles(), StopAt2()], verbose=False).interrupted
    capsys.readouterr()
    assert main(args) == 1
    line = last_line(capsys)
    assert f"the run in run was trained on the dataset in {world / 'data'}, not on the default data/zero_one-compact" in line, line
    assert not (tmp_path / "data").exists()
    given = re.search(r"give (--data_dir=\S+)", line).group(1)
    assert main(args + shlex.split(given)) == 0 and json.loads((tmp_path / "run" / "summary.json").read_text())["interrupted"] is False


def test_a_figure_of_another_run_is_not_this_runs(world, tmp_path, capsys):
    """H251: loss.png carries its run's id, so a finished run whose figure was copied from another run is not reused as
    it stands; --resume draws its own again, and then it is reused."""
    from zo_gpt.figures import png_text
    args = ["train", f"--data_dir={world / 'data'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    shutil.copytree(world / "done", tmp_path / "run")
    assert main(args + [f"--out_dir={tmp_path / 'other'}", "--seed=7"]) == 0
    shutil.copy(tmp_path / "other" / "loss.png", tmp_path / "run" / "loss.png")
    capsys.readouterr()
    run = args + [f"--out_dir={tmp_path / 'run'}"]
    assert main(run + ["--reuse"]) == 2
    assert "it finished, but its loss.png, summary.json or metrics.jsonl is missing or not its own: --resume" in last_line(capsys)
    assert main(run + ["--resume"]) == 0 and main(run + ["--reuse"]) == 0 and "reused the finished run" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert png_text(tmp_path / "run" / "loss.png")["zo_gpt run"] == ckpt["run_id"] != png_text(tmp_path / "other" / "loss.png")["zo_gpt run"]


@pytest.mark.parametrize("swap", ["metrics", "summary", "entropy"])
def test_a_finished_run_holding_another_runs_metrics_or_an_edited_summary_is_not_reused(world, tmp_path, capsys, swap):
    """A32, A33 (pass 18): metrics.jsonl of another run of the same shape, or a summary.json whose settings were edited,
    is not reported as this run's; --resume writes them again from the checkpoint, and then the run is reused."""
    args = ["train", f"--data_dir={world / 'data'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    shutil.copytree(world / "done", tmp_path / "run")
    if swap == "metrics":
        assert main(args + [f"--out_dir={tmp_path / 'other'}", "--seed=7"]) == 0
        shutil.copy(tmp_path / "other" / "metrics.jsonl", tmp_path / "run" / "metrics.jsonl")
    else:   # its settings, or a number it reports (C26, pass 19)
        s = json.loads((tmp_path / "run" / "summary.json").read_text())
        edit = {"config": {**s["config"], "n_embd": 999}} if swap == "summary" else {"entropy": 0.0}
        (tmp_path / "run" / "summary.json").write_text(json.dumps({**s, **edit}))
    capsys.readouterr()
    run = args + [f"--out_dir={tmp_path / 'run'}"]
    assert main(run + ["--reuse"]) == 2 and "is missing or not its own: --resume" in last_line(capsys)
    assert main(run + ["--resume"]) == 0 and main(run + ["--reuse"]) == 0 and "reused the finished run" in capsys.readouterr().out


def test_a_run_without_its_checkpoint_and_summary_is_told_from_its_metrics(world, tmp_path, capsys):
    "A39: a run that failed after checkpoints writes no summary; its metrics.jsonl says it had one, and --force is the way."
    shutil.copytree(world / "done", tmp_path / "run")
    for name in ("ckpt.pt", "summary.json"): (tmp_path / "run" / name).unlink()
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--resume"]) == 1
    assert "the run there had a checkpoint at step 4, but its ckpt.pt is gone: start again with --force" in last_line(capsys)
    assert main(args + ["--force"]) == 0


def test_an_owner_record_replaced_by_a_pipe_or_a_device_is_left_alone(tmp_path):
    "A5, A10: the lock's own record, replaced by a fifo or a link to /dev/zero while held: letting go neither blocks nor reads it."
    import threading
    from zo_gpt.folders import OWNER_FILE, folder_lock
    for kind in ("fifo", "zero"):
        folder, done = tmp_path / kind, threading.Event()
        def hold():
            with folder_lock(folder, "out"):
                (folder / OWNER_FILE).unlink()
                os.mkfifo(folder / OWNER_FILE) if kind == "fifo" else (folder / OWNER_FILE).symlink_to("/dev/zero")
            done.set()
        threading.Thread(target=hold, daemon=True).start()
        assert done.wait(60), f"letting go of the folder blocked on its owner record ({kind})"
        assert os.path.lexists(folder / OWNER_FILE)   # not ours: left where it is


def test_a_default_dataset_another_command_is_making_is_named_by_the_setting_train_has(tmp_path, monkeypatch, capsys):
    "A9: train has no --out; the folder it makes its default dataset in is its data_dir."
    from zo_gpt.folders import folder_lock
    monkeypatch.chdir(tmp_path)
    with folder_lock(Path("data/zero_one-compact"), "out"):   # another command making it
        assert main(["train", "--out_dir=r", "--vocab=compact", *SMALL]) == 2
    assert "data_dir='data/zero_one-compact' is in use by" in last_line(capsys) and not (tmp_path / "r").exists()


def test_a_disk_out_of_inodes_names_the_dataset_file(tmp_path, monkeypatch, capsys):
    "A21: the staging folder's files cannot be made (no inodes left): the line names out/train.bin, not a hidden path that is gone."
    import errno
    import zo_gpt.tokens as tokens
    def no_inodes(path, *a, **k):
        if ".zo_gpt-stage" in str(path): raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open(path, *a, **k)
    monkeypatch.setattr(tokens, "open", no_inodes, raising=False)
    assert main(["prepare", "--out", str(tmp_path / "ds"), "--vocab", "compact", "--n-seq", "20", "--seq-len", "30"]) == 1
    line = last_line(capsys)
    assert str(tmp_path / "ds" / "train.bin") in line and ".zo_gpt-stage" not in line, line


def test_a_stop_when_no_thread_can_start_still_stops_cleanly(world, tmp_path, monkeypatch):
    "A26: with no thread left to start (ulimit -u), the stop signal's message thread fails; the run stops after its step all the same."
    import threading
    from zo_gpt.config import parse_overrides
    from zo_gpt.train import Callback, Checkpointer, RunFiles
    class Stop(Callback):
        def on_step(self, state, record):
            if state.iter == 2: os.kill(os.getpid(), signal.SIGINT)
    def no_thread(self): raise RuntimeError("can't start new thread")
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--eval_interval=2", "--max_iters=4", *SMALL]
    cfg = make_config("cpu", parse_overrides(args[1:]))
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    h = fit(cfg, callbacks=[MetricsLog(), Checkpointer(), RunFiles(), Stop()], verbose=False)
    monkeypatch.undo()
    assert h.interrupted and torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["iter"] == 2


def test_an_export_of_an_unfinished_run_says_so(world, tmp_path, capsys):
    "A30: the export of a stopped run is marked in its README and in a note; a finished run's is not."
    from zo_gpt.train import Callback, Checkpointer, RunFiles
    from zo_gpt.config import parse_overrides
    class StopAt2(Callback):
        def on_step(self, state, record): state.stop = state.iter >= 2
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--eval_interval=2", "--max_iters=4", *SMALL]
    assert fit(make_config("cpu", parse_overrides(args[1:])), callbacks=[MetricsLog(), Checkpointer(), RunFiles(), StopAt2()], verbose=False).interrupted
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "stopped")]) == 0
    assert "It is the model at step 2 of a run of 4 steps that had not finished" in (tmp_path / "stopped" / "README.md").read_text()
    assert "note: It is the model at step 2" in capsys.readouterr().err
    assert main(["export", str(world / "done"), str(tmp_path / "finished")]) == 0
    assert "had not finished" not in (tmp_path / "finished" / "README.md").read_text()
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "stopped")]) == 2   # refused (not empty): no note (C2, pass 19)
    assert "note:" not in capsys.readouterr().err
    shutil.copytree(world / "done", tmp_path / "old")                                # a checkpoint without max_iters (C18)
    ckpt = torch.load(tmp_path / "old" / "ckpt.pt", weights_only=True); del ckpt["config"]["max_iters"]
    torch.save(ckpt, tmp_path / "old" / "ckpt.pt")
    assert main(["export", str(tmp_path / "old"), str(tmp_path / "old-export")]) == 0


@pytest.mark.parametrize("vocab, bad, ids", [("compact", 7, "0, 1, 2, 3, 4"), ("gpt2", 100, "15, 16, 352, 657, 50256")])
def test_a_dataset_whose_tokens_are_not_its_own_is_refused_before_any_run(world, tmp_path, capsys, vocab, bad, ids):
    """Token id 7 in a compact dataset (H211), or GPT-2's id 100 in a gpt2 one (H233), hashes made to match (a learner's own
    tokenizer's output): one line before any work, not torch's IndexError or an evaluation's refusal; nothing is made."""
    from zo_gpt.helpers import file_sha256, meta_hash
    shutil.copytree(world / ("data" if vocab == "compact" else "gpt2"), tmp_path / "ds")
    train = np.fromfile(tmp_path / "ds" / "train.bin", dtype=np.uint16); train[::50] = bad; train.tofile(tmp_path / "ds" / "train.bin")
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    meta["files"]["train.bin"]["sha256"] = file_sha256(tmp_path / "ds" / "train.bin"); meta["content_hash"] = meta_hash(meta)
    (tmp_path / "ds" / "meta.json").write_text(json.dumps(meta))
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", f"--vocab={vocab}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 1 and f"{tmp_path / 'ds'}/train.bin holds token id {bad}, none of the dataset's 5 tokens ({ids})" in last_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_staging_folder_whose_removal_a_kill_cut_short_is_only_removed(world, tmp_path):
    """Killed while a finished swap's staging folder was being removed (B210, B211): it was renamed first, so what is left
    of it holds nothing to put back; the next command removes it and the new files stay."""
    shutil.copytree(world / "data2", tmp_path / "ds")
    done = tmp_path / "ds" / ".zo_gpt-done-killed"; done.mkdir()
    for n in ("train.bin", "meta.json"): shutil.copy(world / "data" / n, done / f"{n}.old")   # the old set, half removed
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 0 and not list((tmp_path / "ds").glob(".zo_gpt-*"))
    assert all((tmp_path / "ds" / n).read_bytes() == (world / "data2" / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json"))


def test_a_resume_from_another_folder_names_the_dataset_where_it_is(world, tmp_path, monkeypatch, capsys):
    """Trained with a relative --data_dir=ds in one folder, resumed from another folder that holds a learner's own ds
    (C210): the hint names the first folder's ds, never a command that replaces the ds here."""
    for d, src in (("a", "data"), ("b", "data2")): (tmp_path / d).mkdir(); shutil.copytree(world / src, tmp_path / d / "ds")
    monkeypatch.chdir(tmp_path / "a")
    args = ["train", "--data_dir=ds", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args + ["--out_dir=run"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert main(args + ["--out_dir=../a/run", "--resume"]) == 1
    line = last_line(capsys)
    assert f"trained on another dataset ({tmp_path / 'a' / 'ds'}," in line and f"it is still in {tmp_path / 'a' / 'ds'}" in line and "prepare" not in line


@pytest.mark.parametrize("name", ["torch.py", "tiktoken.py", "numpy/__init__.py", "random.py", "signal.py"])
def test_a_learners_file_named_like_a_module_zo_gpt_loads_is_named(tmp_path, name):
    """E213, E214, E230: `python -m zo_gpt.cli` puts the current folder first on the import path; a learner's own torch.py,
    or random.py (one of Python's own, which `secrets` loads), is one line, not a traceback; a test.py there is nothing."""
    (tmp_path / name).parent.mkdir(exist_ok=True); (tmp_path / name).write_text("x = 1\n"); (tmp_path / "test.py").write_text("x = 1\n")
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", "--max_iters=2"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert r.returncode == 1 and r.stderr.strip() == (f"zo-gpt train: failed: {name.split('/')[0]} in the current folder hides the module of that "
                                                      "name that zo_gpt loads, as Python looks there first (`python -m`, a notebook's kernel); rename it, or work from another folder"), r.stderr[-2000:]


@pytest.mark.parametrize("cli", ["module", "script"])
def test_a_learners_module_that_fails_as_it_loads_is_named(tmp_path, cli):
    """E250, E255: a signal.py there that raises as it loads, under `python -m zo_gpt.cli` and under the zo-gpt script with
    the folder on PYTHONPATH (a .bashrc line): one line naming it, even for --version."""
    (tmp_path / "signal.py").write_text("raise RuntimeError('my notes on Ctrl-C')\n")
    root = str(Path(__file__).parents[1])
    cmd = [sys.executable, "-m", "zo_gpt.cli"] if cli == "module" else [sys.executable, "-c", "import sys; from zo_gpt import run; sys.exit(run())"]
    r = subprocess.run(cmd + ["--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": root if cli == "module" else f".:{root}"})
    assert r.returncode == 1 and r.stderr.strip().startswith("zo-gpt: failed: signal.py in the current folder hides the module"), r.stderr[-2000:]


@pytest.mark.parametrize("name, body, argv", [
    ("typing_extensions.py", "x = 1\n", ["train", "--max_iters=2"]),                                   # B16: installed elsewhere, loaded by torch
    ("opt_einsum.py", "raise RuntimeError('mine')\n", ["train", "--max_iters=2"]),                     # C28: torch tries it, it fails
    ("json.py", "x = 1\n", ["prepare", "--out", "ds", "--n-seq", "20", "--seq-len", "30"]),           # B17: not blamed on tiktoken's cache
])
def test_any_module_here_that_a_library_loads_is_named(tmp_path, name, body, argv):
    "Pass 18, 19: not only the libraries zo_gpt names: whatever module a library takes from the current folder, whatever failed after."
    (tmp_path / name).write_text(body)
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert r.returncode == 1 and r.stderr.strip() == (f"zo-gpt {argv[0]}: failed: {name} in the current folder hides the module of that "
                                                      "name that zo_gpt loads, as Python looks there first (`python -m`, a notebook's kernel); rename it, or work from another folder"), r.stderr[-2000:]


def test_a_run_of_one_torchrun_process_is_reused_without_torchrun(world, tmp_path, capsys):
    "C34: a run trained with RANK=0 WORLD_SIZE=1 set records its one-process group; reused plainly, no group is left to close."
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    r = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert main(args + ["--reuse"]) == 0 and "reused the finished run" in capsys.readouterr().out


def test_a_path_with_dotdot_after_a_link_is_where_the_system_puts_it(world, tmp_path, monkeypatch):
    "J214: lnk/../run, lnk a link to t/inner: the system's parent is t, the text's is here; the run goes where the system says."
    (tmp_path / "w").mkdir(); (tmp_path / "t" / "inner").mkdir(parents=True); (tmp_path / "w" / "lnk").symlink_to(tmp_path / "t" / "inner")
    monkeypatch.chdir(tmp_path / "w")
    assert main(["prepare", "--out", "lnk/../ds", "--n-seq", "200", "--seq-len", "60", "--vocab", "compact"]) == 0
    assert main(["train", "--data_dir=lnk/../ds", "--out_dir=lnk/../run", "--max_iters=2", "--eval_interval=2", *SMALL]) == 0
    assert (tmp_path / "t" / "ds" / "meta.json").is_file() and (tmp_path / "t" / "run" / "ckpt.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["lnk"]


def test_a_finished_run_whose_figure_was_emptied_is_not_reused_as_it_is(world, tmp_path, capsys):
    "H217: loss.png of 0 bytes (or cut short) is no figure: --reuse does not report the run as whole, and --resume draws it again."
    shutil.copytree(world / "done", tmp_path / "run"); (tmp_path / "run" / "loss.png").write_bytes(b"")
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--reuse"]) == 2 and "its loss.png, summary.json or metrics.jsonl is missing or not its own: --resume" in last_line(capsys)
    assert main(args + ["--resume"]) == 0 and (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args + ["--reuse"]) == 0


def test_a_run_folder_given_for_a_dataset_is_named_and_no_dataset_goes_into_it(world, tmp_path, capsys):
    "J231: --data_dir=<a run folder> says so; and prepare --out <a run folder>, the old hint, is refused, nothing written."
    shutil.copytree(world / "done", tmp_path / "run")
    args = ["train", f"--data_dir={tmp_path / 'run'}", f"--out_dir={tmp_path / 'new'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 1 and f"data_dir='{tmp_path / 'run'}' is a run folder (it holds ckpt.pt), not a dataset" in last_line(capsys)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert main(["prepare", "--out", str(tmp_path / "run"), "--n-seq", "20", "--seq-len", "30", "--vocab", "compact"]) == 2
    assert "holds a run (ckpt.pt): a dataset goes in a folder of its own" in last_line(capsys)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before and not (tmp_path / "new").exists()


def test_a_run_that_runs_out_of_memory_before_its_first_checkpoint_leaves_no_run(world, tmp_path, monkeypatch, capsys):
    "I233: its metrics.jsonl goes with it, so the same command with smaller settings works there; a set ulimit -v is named."
    import resource
    import zo_gpt.data, zo_gpt.train
    def no_memory(*a, **k): raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 134217728 bytes")
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    with monkeypatch.context() as m:
        m.setattr(zo_gpt.train, "train_step", no_memory)
        m.setattr(resource, "getrlimit", lambda which: (3_000_000 << 10, resource.RLIM_INFINITY))
        m.setattr(zo_gpt.data, "memory_room", lambda: None)   # the limit is pretended: this process is larger than it
        assert main(args) == 1
    assert "raise the memory limit (now ulimit -v 3000000) or try a smaller batch_size" in last_line(capsys)
    assert not (tmp_path / "run").exists()
    assert main(args) == 0


def test_a_figure_with_a_damaged_middle_is_no_whole_figure(world, tmp_path):
    "H230: bit rot inside loss.png, its signature and end intact: the chunks' checksums say it."
    from zo_gpt.figures import png_text
    png = (world / "done" / "loss.png").read_bytes()
    ckpt = torch.load(world / "done" / "ckpt.pt", weights_only=True)
    assert png_text(world / "done" / "loss.png")["zo_gpt run"] == ckpt["run_id"]   # whole, and tagged with its run
    for name, data in (("rot", png[:len(png) // 2] + bytes(64) + png[len(png) // 2 + 64:]), ("cut", png[:-20]), ("empty", b"")):
        (tmp_path / name).write_bytes(data)
        assert png_text(tmp_path / name) is None, name


def test_a_checkpoint_whose_numbers_changed_after_it_was_written_is_named(world, tmp_path, capsys):
    """H255: bit rot inside a tensor of ckpt.pt leaves its size and index alone, and torch.load reads the changed numbers
    without a word; the zip's checksums say it, for sample and for --resume, and nothing is trained on it."""
    import struct
    shutil.copytree(world / "done", tmp_path / "run")
    ckpt = tmp_path / "run" / "ckpt.pt"
    with zipfile.ZipFile(ckpt) as z: part = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)   # the largest tensor
    data = bytearray(ckpt.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[part.header_offset + 26:part.header_offset + 30])
    middle = part.header_offset + 30 + name_len + extra_len + part.file_size // 2
    data[middle] ^= 0x40
    ckpt.write_bytes(bytes(data))
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    for argv in (["sample", "--run", str(tmp_path / "run")],
                 ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=6", "--eval_interval=2", *SMALL, "--resume"]):
        assert main(argv) == 1
        assert f"{ckpt} is damaged: {part.filename.split('/', 1)[1]} in it fails its checksum (CRC-32)" in last_line(capsys)   # data/N, not its temporary name (A50)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before


def test_a_tilde_in_the_tiktoken_cache_variable_is_told(monkeypatch):
    "E234: tiktoken does not expand '~' in TIKTOKEN_CACHE_DIR; the hint says so, where following it would fail again."
    import tiktoken
    from zo_gpt.tokens import TokenizerUnavailable, gpt2_encoding
    def offline(name): raise ConnectionError("no network")
    monkeypatch.setattr(tiktoken, "get_encoding", offline); monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "~/tc")
    gpt2_encoding.cache_clear()
    try:
        with pytest.raises(TokenizerUnavailable, match="TIKTOKEN_CACHE_DIR is '~/tc' now; tiktoken reads its '~' as a folder of that name"):
            gpt2_encoding()
    finally: gpt2_encoding.cache_clear()


def test_a_stopped_run_whose_checkpoint_was_deleted_is_not_said_to_have_had_none(world, tmp_path, capsys):
    "C239: the summary says 4 steps, so it had a checkpoint: 'stopped at step 4, but its ckpt.pt is gone', and --force works."
    shutil.copytree(world / "done", tmp_path / "run"); (tmp_path / "run" / "ckpt.pt").unlink()
    s = json.loads((tmp_path / "run" / "summary.json").read_text()); (tmp_path / "run" / "summary.json").write_text(json.dumps({**s, "interrupted": True}))
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--resume"]) == 1 and "the run there stopped at step 4, but its ckpt.pt is gone: start again with --force" in last_line(capsys)
    assert main(args) == 2 and "it stopped at step 4, but its ckpt.pt is gone, so nothing can resume or reuse it" in last_line(capsys)
    assert main(args + ["--force"]) == 0


def test_a_resume_on_an_edited_meta_json_makes_the_dataset_with_the_checkpoints_arguments(world, tmp_path, capsys):
    "C236: a note added to meta.json by hand: the resume's hint makes the dataset with the arguments its checkpoint records, and then resumes."
    shutil.copytree(world / "data", tmp_path / "ds")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--eval_interval=2", *SMALL]
    assert main(args + ["--max_iters=2"]) == 0
    m = json.loads((tmp_path / "ds" / "meta.json").read_text()); (tmp_path / "ds" / "meta.json").write_text(json.dumps({**m, "note": "mine"}))
    assert main(args + ["--max_iters=2", "--resume"]) == 1
    hint = re.search(r"`(zo-gpt prepare [^`]*)`", line := last_line(capsys)).group(1)
    assert "--n-seq 200 --seq-len 60" in hint and "the run in" in line, line
    assert main(shlex.split(hint)[1:]) == 0 and main(args + ["--max_iters=2", "--reuse"]) == 0   # the run's own dataset again


def test_a_dataset_whose_meta_json_links_to_nothing_is_named(world, tmp_path, capsys):
    "H235: meta.json a link to an unmounted disk: train says so, not 'no meta.json' with a prepare that is then refused."
    shutil.copytree(world / "data", tmp_path / "ds"); (tmp_path / "ds" / "meta.json").unlink()
    (tmp_path / "ds" / "meta.json").symlink_to("/mnt/not-mounted/ds/meta.json")
    args = ["train", f"--data_dir={tmp_path / 'ds'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=2", "--eval_interval=2", *SMALL]
    assert main(args) == 1 and f"{tmp_path / 'ds' / 'meta.json'} is a symbolic link to /mnt/not-mounted/ds/meta.json, which does not exist now" in last_line(capsys)


def test_a_reuse_from_another_folder_is_told_the_runs_dataset_and_the_hint_works(world, tmp_path, monkeypatch, capsys):
    "B125 (pass 20): a run trained with a relative --data_dir, reused from another folder: the hint makes the run's dataset."
    (tmp_path / "a").mkdir(); (tmp_path / "b").mkdir()
    shutil.copytree(world / "data", tmp_path / "a" / "ds")
    monkeypatch.chdir(tmp_path / "a")
    args = ["train", "--data_dir=ds", f"--out_dir={tmp_path / 'a' / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args) == 0
    monkeypatch.chdir(tmp_path / "b"); capsys.readouterr()
    assert main(args + ["--reuse"]) == 1
    line = last_line(capsys)
    assert "trained on one made with" in line and "n_seq=200" in line, line
    hint = re.search(r"`zo-gpt (prepare [^`]*)`", line).group(1)
    assert main(shlex.split(hint)) == 0
    capsys.readouterr()
    assert main(args + ["--reuse"]) == 0 and "reused the finished run" in capsys.readouterr().out


def test_a_finished_run_on_another_dataset_is_not_offered_to_force_alone(world, tmp_path, capsys):
    "B125: --reuse of a finished run with another dataset given: the refusal says so and names the run's own dataset first."
    shutil.copytree(world / "done", tmp_path / "run")
    args = ["train", f"--data_dir={world / 'data2'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    assert main(args + ["--reuse"]) == 2
    line = last_line(capsys)
    assert "it finished, trained on another dataset" in line and "for that run, it is still in" in line and line.count("--force") == 1, line
    own = [re.search(r"give (--data_dir=\S+)", line).group(1)]
    assert main(args[:1] + own + args[2:] + ["--reuse"]) == 0
    assert main(args[:1] + own + args[2:] + ["--n_embd=32"]) == 2
    assert "it finished, with other settings (n_embd=16 there)" in last_line(capsys)


def test_a_failed_write_under_a_file_size_limit_names_the_file_however_small_the_dataset(tmp_path):
    "B76: ulimit -f crossed part-way through the first write: the line names train.bin and the limit; no folder is left."
    import resource
    r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "ds"), "--vocab", "compact", "--n-seq", "200", "--seq-len", "60"],
                       capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20 << 10, 20 << 10)))
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "train.bin" in r.stderr and "ulimit -f" in r.stderr and not (tmp_path / "ds").exists(), r.stderr


def test_a_probability_a_run_would_read_as_zero_is_refused_by_prepare(tmp_path, capsys):
    "B32: p=1e-310 (subnormal) is refused before any work, not made into a dataset that every run then refuses."
    assert main(["prepare", "--out", str(tmp_path / "ds"), "--p", "1e-310", "--n-seq", "20", "--seq-len", "30"]) == 2
    assert "the smallest normal float" in last_line(capsys) and not (tmp_path / "ds").exists()


def _done_copy(world, tmp_path, *extra):
    shutil.copytree(world / "done", tmp_path / "run")
    return ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL, *extra]


def test_a_finished_run_whose_final_record_was_edited_is_not_reused_as_it_is(world, tmp_path, capsys):
    "A69 (pass 20): every record of metrics.jsonl is the checkpoint's, the final evaluation's too; --resume writes it again."
    args = _done_copy(world, tmp_path)
    path = tmp_path / "run" / "metrics.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines()]
    assert rows[-1]["kind"] == "final"
    rows[-1]["loss"] = 0.1; path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(args + ["--reuse"]) == 2 and "metrics.jsonl is missing or not its own: --resume" in last_line(capsys)
    assert main(args + ["--resume"]) == 0 and json.loads(path.read_text().splitlines()[-1])["loss"] != 0.1
    assert main(args + ["--reuse"]) == 0


def test_a_figure_the_run_drew_before_its_end_is_not_its_figure(world, tmp_path, capsys):
    "A116: loss.png tagged with the run's id but drawn when it was stopped (fewer steps) is not the finished run's."
    from PIL import Image, PngImagePlugin
    args = _done_copy(world, tmp_path)
    png = tmp_path / "run" / "loss.png"
    tags = Image.open(png).text
    assert tags["zo_gpt shows"] == "4 steps, the final evaluation"
    info = PngImagePlugin.PngInfo(); info.add_text("zo_gpt run", tags["zo_gpt run"]); info.add_text("zo_gpt shows", "2 steps")
    Image.open(png).save(png, pnginfo=info)
    assert main(args + ["--reuse"]) == 2 and "its loss.png, summary.json or metrics.jsonl is missing or not its own" in last_line(capsys)
    info = PngImagePlugin.PngInfo(); info.add_text("zo_gpt run", tags["zo_gpt run"])   # the tag stripped (A9, pass 21): as old as any
    Image.open(png).save(png, pnginfo=info)
    assert main(args + ["--reuse"]) == 2 and "--resume (resume=True) writes them again" in last_line(capsys)
    assert main(args + ["--resume"]) == 0 and main(args + ["--reuse"]) == 0


def test_a_checkpoint_of_other_settings_in_a_finished_folder_is_said_to_be_one(world, tmp_path, capsys):
    "A71: another seed's ckpt.pt copied in: the refusal names the settings, not --resume (which cannot continue it)."
    args = _done_copy(world, tmp_path)
    assert main(["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 's5'}", "--max_iters=4", "--eval_interval=2", *SMALL, "--seed=5"]) == 0
    shutil.copy(tmp_path / "s5" / "ckpt.pt", tmp_path / "run" / "ckpt.pt"); capsys.readouterr()
    assert main(args) == 2 and "its ckpt.pt and summary.json are of two different runs (a ckpt.pt copied in?): going on from it would write over the other's" in last_line(capsys)


def test_a_finished_run_that_asked_for_no_final_evaluation_is_offered_to_reuse(world, tmp_path, capsys):
    "A107: the same command with --final_eval=False again: --reuse, not a --resume that has nothing to do."
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL, "--final_eval=False"]
    assert main(args) == 0; capsys.readouterr()
    assert main(args) == 2 and "it finished: --reuse (reuse=True) reads its results" in last_line(capsys)
    assert main(args + ["--reuse"]) == 0


def test_a_plain_pickle_for_a_checkpoint_is_one_line_without_torchs_warning(world, tmp_path):
    "A74: a ckpt.pt written with pickle (protocol 4): torch's warning about the protocol does not reach the user."
    shutil.copytree(world / "done", tmp_path / "run")
    with open(tmp_path / "run" / "ckpt.pt", "wb") as f: pickle.dump({"model": 1}, f, protocol=4)
    r = subprocess.run([CLI, "sample", "--run", str(tmp_path / "run"), "--tokens", "5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "it is not a torch checkpoint (the zip file torch.save writes)" in r.stderr


def test_a_missing_dataset_is_not_told_from_another_runs_checkpoint(world, tmp_path, capsys):
    "Review of pass 20's fix: --reuse with other settings than the run in the folder: that run's dataset is not named."
    args = _done_copy(world, tmp_path, "--n_embd=32")
    args[1] = f"--data_dir={tmp_path / 'gone'}"
    assert main(args + ["--reuse"]) == 1
    line = last_line(capsys)
    assert "does not exist" in line and "was trained on" not in line, line


@pytest.mark.parametrize("flag, says", [("--f", "expected --key=value, got '--f'"), ("--fo", "expected --key=value, got '--fo'"),
                                        ("--=1", "unknown setting ''")])
def test_no_option_is_taken_from_an_abbreviation(world, tmp_path, capsys, flag, says):
    "B24, B1 (pass 21): --f is not --force: a finished run is not replaced by a flag the user did not spell out."
    args = _done_copy(world, tmp_path)
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    assert main(args + [flag]) == 2 and says in last_line(capsys)
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before


@pytest.mark.parametrize("command, redirect", [("sample --run {run} --tokens 5", ">&-"), ("explain {run}", ">&-"),
                                               ("explain {run}", ">/dev/full")])
def test_a_command_whose_text_is_its_work_fails_when_its_standard_output_is_lost(finished_run, command, redirect):
    """B33 (pass 21), A13 A14 B60 B61 (pass 22): sample's and explain's text is their work, so a stdout closed from the start,
    or a full disk, fails them in one line, not a success."""
    cmd = command.format(run=shlex.quote(str(finished_run)))
    r = subprocess.run(f"{shlex.quote(CLI)} {cmd} {redirect}", shell=True, stderr=subprocess.PIPE, text=True, timeout=300)
    says = "the standard output is closed" if redirect == ">&-" else "could not write to the standard output (No space left on device)"
    assert r.returncode in (1, 2) and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_words_of_any_integer_type_are_encoded():
    "B109: 0/1 words as numpy's default int64 (not only uint8) go through the piece table."
    words = np.array([[1, 0, 1], [0, 0, 1]])
    assert tokens_mod.encode_words(words, vocab="compact").tolist() == tokens_mod.encode_words(words.astype(np.uint8), vocab="compact").tolist()


def test_a_long_command_line_in_a_lock_record_is_cut_between_words(monkeypatch):
    "A24 (pass 21): the holder's command is cut at a space and marked, so no setting is shown with a value it does not have."
    from zo_gpt.folders import _command
    monkeypatch.setattr(sys, "argv", ["/usr/bin/zo-gpt", "train", "--out_dir=" + "x" * 150, "--data_dir=ds", "--max_iters=3000"])
    line = _command()
    assert len(line) <= 200 and line.endswith(" ...") and "--max_iters=3" not in line and line.split()[-2] == "--data_dir=ds", line
    monkeypatch.setattr(sys, "argv", ["zo-gpt", "y" * 300])
    assert _command() == "zo-gpt ..."   # one word too long: cut after the program's name


def test_a_folder_on_a_file_system_without_locks_is_one_line_and_left_as_it_was(tmp_path, monkeypatch, capsys):
    "A97 A98 (pass 22): flock failing with ENOLCK (NFS without its lock service) was a traceback, and left the folder it made."
    import errno, fcntl
    real = fcntl.flock
    def flock(fd, op):
        if op & fcntl.LOCK_UN: return real(fd, op)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, "flock", flock)
    assert main(["prepare", "--out", str(tmp_path / "new" / "ds"), "--n-seq", "20", "--seq-len", "10", "--vocab", "compact"]) == 2
    line = last_line(capsys)
    assert "cannot be locked (No locks available): its file system keeps no locks" in line and "local disk" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_umask_that_closes_what_is_made_to_its_owner_is_refused_before_any_folder_is_made(tmp_path, capsys):
    "B56 B147 (pass 22): under `umask 0777` a prepare made folders of mode 000, which it then could not enter, and left them."
    old = os.umask(0o777)
    try: code = main(["prepare", "--out", str(tmp_path / "ds"), "--n-seq", "20", "--seq-len", "10", "--vocab", "compact"])
    finally: os.umask(old)
    assert code == 2 and "the umask is 0777" in last_line(capsys) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("thing", ["fifo", "folder"])
def test_a_tiktoken_cache_that_would_hang_or_be_taken_for_empty_is_named(tmp_path, monkeypatch, thing):
    """B149 B150 B117 (pass 22): a pipe in TIKTOKEN_CACHE_DIR hung prepare for ever; a cache folder that cannot be read was
    taken for an empty one, and the failure blamed on the network."""
    cache = tmp_path / "cache"
    shutil.copytree(os.environ["TIKTOKEN_CACHE_DIR"], cache)
    if thing == "fifo": os.mkfifo(cache / "pipe")
    else: monkeypatch.setattr(os, "scandir", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    if thing == "fifo":
        r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "ds"), "--n-seq", "20", "--seq-len", "10"], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "holds 'pipe', which is not a file (a pipe or a device)" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not (tmp_path / "ds").exists()
    else:
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        with pytest.raises(tokens_mod.TokenizerUnavailable, match=r"cannot be read \(Permission denied\), so tiktoken would take it for empty"):
            tokens_mod.gpt2_encoding.__wrapped__()


def test_an_error_in_a_staged_file_names_the_path_the_user_gave(tmp_path, monkeypatch, capsys):
    "B76 B109 (pass 22): a failure while a dataset was being staged named the hidden stage folder, which is gone once it ends."
    import zo_gpt.cli as cli
    staged = tmp_path / "ds" / ".zo_gpt-stage-k2j4" / "train.bin"
    def fails(args, extra): raise OSError(28, "No space left on device", str(staged))
    monkeypatch.setattr(cli, "_prepare", fails)
    assert main(["prepare", "--out", str(tmp_path / "ds")]) == 1
    assert last_line(capsys) == f"zo-gpt prepare: failed: No space left on device: {tmp_path / 'ds' / 'train.bin'}"


def test_a_resume_on_another_thread_count_says_it_is_not_step_for_step(world, tmp_path, capsys):
    "B144 (pass 22): a run resumed on another number of CPU threads went on with sums split another way, and said nothing."
    threads = torch.get_num_threads()
    stopped_at_2(world, tmp_path / "run")
    capsys.readouterr()
    torch.set_num_threads(threads + 1)
    try: code = main(["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL, "--resume"])
    finally: torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert code == 0 and f"was written by a run on {threads} CPU threads, and this one has {threads + 1}" in err, err
    assert f"OMP_NUM_THREADS={threads}" in err


def test_a_command_leaves_no_file_unclosed(tmp_path):
    "B43 (pass 23): with PYTHONWARNINGS set, the umask's read of /proc/self/status showed a ResourceWarning for every command."
    r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "ds"), "--n-seq", "20", "--seq-len", "10", "--vocab", "compact"],
                       env={**os.environ, "PYTHONWARNINGS": "default"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ResourceWarning" not in r.stderr, r.stderr[-2000:]


def test_a_run_folder_given_as_a_dataset_is_told_as_one(world):
    "G10 (pass 23): load_dataset on a run folder advised `zo-gpt prepare --out` there, which prepare then refuses."
    with pytest.raises(DatasetError, match="is a run folder \\(it holds ckpt.pt\\), not a dataset; give its dataset's folder"):
        load_dataset(world / "done")


def test_a_batch_whose_activations_cannot_fit_is_refused_before_it_is_tried(world, tmp_path, capsys):
    "G16 (pass 23): batch_size=10**7 grew to 22 GB until the kernel killed it (rc 137, no word), leaving an empty metrics.jsonl."
    # 400,000 x 32 tokens at n_embd=512: 205 MB of fixed batches, which any machine holds, and at least 419 GB of activations
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", *SMALL, "--batch_size=400000", "--n_embd=512"]
    assert main(args) == 2
    assert "would keep at least" in (line := last_line(capsys)) and "of activations for one step's backward" in line, line
    assert not (tmp_path / "run").exists()


def test_a_resumed_runs_clock_goes_on_from_where_it_stopped(world, tmp_path):
    "A5 (pass 23): after --resume, metrics.jsonl's times started again from 0 and the final time counted only the last part."
    from zo_gpt.train import Checkpointer, RunFiles
    cfg = stopped_at_2(world, tmp_path / "run")
    stopped = max(json.loads(l)["time"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    time.sleep(0.5)   # a pause between the two processes is not the run's time
    h = fit(cfg, callbacks=[MetricsLog(), Checkpointer(), RunFiles()], verbose=False, resume=True)
    times = [json.loads(l)["time"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert times == sorted(times) and h.final["time"] >= times[-1] > stopped, (stopped, times, h.final["time"])   # before: 0.05 after 4.09


def test_a_sample_or_explain_of_an_unfinished_run_says_so(world, tmp_path, capsys):
    "A68 A70 (pass 23): sample on a run stopped at step 66 of 1000 printed its text as if it were the trained model's."
    stopped_at_2(world, tmp_path / "run")
    capsys.readouterr()
    assert main(["sample", "--run", str(tmp_path / "run"), "--tokens", "20"]) == 0
    assert "has taken 2 of its 4 steps; this is its model so far" in capsys.readouterr().err
    assert main(["sample", "--run", str(world / "done"), "--tokens", "20"]) == 0 and "note:" not in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "run")]) == 0   # explain too (pass 24's blemish)
    assert "has taken 2 of its 4 steps; this is its model so far" in capsys.readouterr().err


def test_a_run_folder_moved_while_its_checkpoint_is_written_is_told_as_moved(world, tmp_path, monkeypatch, capsys):
    "A9 (pass 23): a folder moved just after torch.save wrote its temporary file: an internal line, exit 2, and a .tmp left behind."
    import zo_gpt.checkpoint as ck
    out, real, done = tmp_path / "run", ck.torch.save, []
    def save(obj, f, *a, **k):
        real(obj, f, *a, **k)
        if not done: done.append(1); os.rename(out, tmp_path / "moved")
    monkeypatch.setattr(ck.torch, "save", save)
    assert main(["train", f"--data_dir={world / 'data'}", f"--out_dir={out}", "--max_iters=4", "--eval_interval=2", *SMALL]) == 1
    assert "was moved, removed or replaced while this process held it" in last_line(capsys)
    assert not [p.name for p in (tmp_path / "moved").iterdir() if p.name.endswith(".tmp")]


def stopped_at_2(world, out:Path) -> TrainConfig:
    "A 4-step run of small settings on world's dataset in `out`, stopped after step 2 with its checkpoint: its settings."
    from zo_gpt.train import Callback, Checkpointer, RunFiles
    class StopAt2(Callback):
        def on_step(self, state, record): state.stop = state.iter >= 2
    cfg = make_config("cpu", {"data_dir": str(world / "data"), "out_dir": str(out), "max_iters": 4, "eval_interval": 2,
                              "block_size": 32, "batch_size": 4, "n_embd": 16, "eval_batches": 1, "final_tokens": 2000})
    assert fit(cfg, callbacks=[MetricsLog(), Checkpointer(), RunFiles(), StopAt2()], verbose=False).interrupted
    return cfg


def test_a_notebooks_own_folder_is_held_for_its_kernels_life(tmp_path):
    """A43 A66 (pass 23): two kernels running 02f_shared_run or 02c_checkpoint into one run_dir collided (a raw FileExistsError,
    a misleading line): a notebook's own folders were marked, not held. The second kernel is now refused in one line, while
    the first kernel's own commands still take the folder, one writer at a time."""
    run_dir = tmp_path / "shared"
    code = ("import sys; from zo_gpt.notebooks import notebook_folders\n"
            f"notebook_folders('02c_checkpoint', {{'run_dir': {str(run_dir)!r}}}); print('held', flush=True); sys.stdin.read()")
    first = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"   # waits for the state, not for a time
        second = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and (f"ConfigError: run_dir={str(run_dir)!r} is in use by another process: the kernel of a "
                                           "notebook that took it as its own (02c_checkpoint)") in second.stderr, second.stderr[-2000:]
    finally:
        first.stdin.close(); first.wait(timeout=120)
    r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "held\n", r.stderr[-2000:]   # the first kernel gone, its hold went with it


def test_a_kept_folder_takes_its_own_processes_commands_one_writer_at_a_time(tmp_path):
    "keep_held: folder_lock in the keeping process works, a second writer thread is refused, and the hold outlives both."
    import threading
    from zo_gpt.folders import folder_lock, keep_held
    keep_held(tmp_path, "run_dir")
    inside, go, said = threading.Event(), threading.Event(), []
    def writer():
        with folder_lock(tmp_path, "run_dir"): inside.set(); go.wait(60)
    t = threading.Thread(target=writer); t.start()
    try:
        assert inside.wait(60)
        with pytest.raises(ConfigError, match="is in use by"):
            with folder_lock(tmp_path, "run_dir"): pass
        with pytest.raises(ConfigError, match="is in use by"):   # a reader would settle the writer's live staging folders
            with folder_lock(tmp_path, "run_dir", shared=True): pass
    finally:
        go.set(); t.join(60)
    with folder_lock(tmp_path, "run_dir"): pass   # the writer done: taken again
    r = subprocess.run([sys.executable, "-c", f"from zo_gpt.folders import folder_lock\nwith folder_lock({str(tmp_path)!r}, 'out'): pass"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "is in use by" in r.stderr, r.stderr[-2000:]   # another process: refused while this one lives


def test_a_run_into_another_datasets_folder_is_refused(world, tmp_path, capsys):
    """A50 A51 B69 (pass 24): train --out_dir=<another dataset's folder> wrote the run beside it, and then no prepare could
    reuse or remake the dataset there ("holds a run"), the advice train and explain give for it."""
    shutil.copytree(world / "data2", tmp_path / "other")
    before = {p.name: p.read_bytes() for p in (tmp_path / "other").iterdir()}
    assert main(["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'other'}", "--max_iters=2", "--eval_interval=2", *SMALL]) == 2
    assert "holds a dataset (meta.json, train.bin, val.bin): a run goes in a folder of its own" in last_line(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "other").iterdir()} == before


def test_a_ckpt_pt_that_is_a_folder_is_told_to_be_moved(world, tmp_path, capsys):
    "B138 (pass 24): sample's advice for a ckpt.pt that is a folder, 'give its ckpt.pt', sent the user to rdir/ckpt.pt/ckpt.pt."
    (tmp_path / "run" / "ckpt.pt").mkdir(parents=True)
    assert main(["sample", "--run", str(tmp_path / "run"), "--tokens", "5"]) == 1
    assert last_line(capsys).endswith(f"{tmp_path / 'run' / 'ckpt.pt'} is a folder where the run keeps its checkpoint file: move it away")


def test_a_failed_checkpoint_write_shows_no_cxx_text(tmp_path, monkeypatch):
    "A52 A54 (pass 24): a full disk or `ulimit -f` showed torch's C++ text 'basic_ios::clear: iostream error' in the line."
    import zo_gpt.checkpoint as ck
    def save(obj, f, *a, **k): raise RuntimeError("basic_ios::clear: iostream error")
    monkeypatch.setattr(ck.torch, "save", save)
    with pytest.raises(TrainingError) as e: ck.write_checkpoint(tmp_path / "ckpt.pt", dict.fromkeys(ck.CKPT_KEYS))
    assert str(e.value).startswith(f"could not write {tmp_path / 'ckpt.pt'}: the write failed (") and "basic_ios" not in str(e.value), e.value
    assert list(tmp_path.iterdir()) == []


def test_a_diverged_run_with_a_checkpoint_says_the_next_try_needs_force(world, tmp_path, capsys):
    "Pass 24's blemish: 'try a smaller lr' led to a refusal where the diverged run had kept its folder; the line says --force."
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", *SMALL, "--max_iters=40", "--eval_interval=2"]
    assert main(args + ["--lr=30"]) == 1
    line = last_line(capsys)
    assert "the run diverged: try a smaller lr (now 30)" in line and "the last good checkpoint is" in line, line
    assert line.endswith("its folder holds this run, so start again there with --force (overwrite=True)"), line
    assert main(args + ["--lr=0.03", "--force"]) == 0                              # the advice works


def test_profile_refuses_a_run_folder_as_its_out(world, tmp_path, capsys):
    "A49 X15 X19 (passes 23, 24): profile wrote its report into a run's folder, where prepare refuses to write a dataset."
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["profile", "--out", str(run), f"--data_dir={world / 'data'}", "--vocab=compact", "--steps=1", *SMALL]) == 2
    assert last_line(capsys).endswith(f"out={str(run)!r} holds a run (ckpt.pt): a profile report goes in a folder of its own; choose another folder")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_ckpt_from_another_run_is_told_apart_from_its_summary(world, tmp_path, capsys):
    "A64 (pass 24): a finished run's ckpt.pt swapped for another's was refused for 'other settings', not for the two disagreeing."
    args = ["train", f"--data_dir={world / 'data'}", *SMALL, "--eval_interval=2"]
    assert main(args + [f"--out_dir={tmp_path / 'a'}", "--max_iters=4"]) == 0 and main(args + [f"--out_dir={tmp_path / 'b'}", "--max_iters=6"]) == 0
    shutil.copy(tmp_path / "a" / "ckpt.pt", tmp_path / "b" / "ckpt.pt")
    capsys.readouterr()
    assert main(args + [f"--out_dir={tmp_path / 'b'}", "--max_iters=6", "--reuse"]) == 2
    assert "its ckpt.pt and summary.json are of two different runs (a ckpt.pt copied in?): going on from it would write over the other's" in last_line(capsys)
    shutil.copy(tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json")   # the pair of one run: no word of two
    assert main(args + [f"--out_dir={tmp_path / 'b'}", "--max_iters=6", "--reuse"]) == 2 and "two different runs" not in last_line(capsys)


def test_a_reused_dataset_settles_what_a_killed_prepare_left(world, tmp_path, capsys):
    "A66 (pass 24): after a prepare --force killed mid-swap, the same prepare reused the dataset and left its 14 MB staging folder and owner record."
    data = tmp_path / "data"; shutil.copytree(world / "data", data)
    before = {n: (data / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json")}
    (stage := data / ".zo_gpt-stage-killed").mkdir(); (stage / "train.bin").write_bytes(b"\0" * 1000)
    (data / ".zo_gpt.owner").write_text("process 1 (zo-gpt prepare --force)\n0123456789abcdef\n")
    meta = json.loads((data / "meta.json").read_text())
    assert main(["prepare", "--out", str(data), "--n-seq", str(meta["config"]["n_seq"]), "--seq-len", str(meta["config"]["seq_len"]),
                 "--seed", str(meta["config"]["seed"]), "--vocab", "compact"]) == 0
    assert "reused" in capsys.readouterr().out
    assert sorted(p.name for p in data.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    assert {n: (data / n).read_bytes() for n in before} == before


def test_a_damaged_tiktoken_cache_is_told_apart_from_a_missing_network(tmp_path):
    "B45 (pass 23): a cache whose files were truncated read as a network failure; tiktoken removes such a file, and the line says it did."
    cache = tmp_path / "cache"; shutil.copytree(os.environ.get("TIKTOKEN_CACHE_DIR") or pytest.skip("needs the tiktoken cache"), cache)
    cache.chmod(0o755)                                                           # the copy of a read-only cache: tiktoken removes files from it
    for f in cache.iterdir(): f.chmod(0o644); f.write_bytes(f.read_bytes()[:1000])
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}   # no download either
    r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "d"), "--n-seq=20", "--seq-len=10", "--vocab=gpt2"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "in its cache folder damaged (truncated or changed) and removed them" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "d").exists()


def test_prepare_does_not_take_an_edited_meta_json_at_its_word(world, tmp_path, capsys):
    "A45 (pass 23): p edited to 0.5 in meta.json; prepare with the true arguments said it was made with p=0.5, where train calls it changed."
    data = tmp_path / "data"; shutil.copytree(world / "data", data)
    meta = json.loads((data / "meta.json").read_text()); c = meta["config"]
    (data / "meta.json").write_text(json.dumps({**meta, "config": {**c, "p": 0.5}}))
    args = ["prepare", "--out", str(data), "--n-seq", str(c["n_seq"]), "--seq-len", str(c["seq_len"]), "--seed", str(c["seed"]), "--vocab", "compact"]
    assert main(args) == 1
    assert "holds a dataset whose meta.json was changed after it was made (its content hash no longer matches), so its arguments are unknown; pass --force" in last_line(capsys)
    assert main(args + ["--force"]) == 0 and (data / "train.bin").read_bytes() == (world / "data" / "train.bin").read_bytes()


def test_a_stopped_run_asked_with_other_settings_is_told_its_settings_with_resume(world, tmp_path, capsys):
    "A47 (pass 25): a stopped run, asked for with another lr and no flag, was told to --resume, which then refused the lr."
    cfg = stopped_at_2(world, tmp_path / "run")
    capsys.readouterr()
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'run'}", *SMALL, "--max_iters=4", "--eval_interval=2"]
    assert main(args + ["--lr=0.01"]) == 2
    assert (f"it stopped at step 2, with other settings (lr={cfg.lr!r} there): continue it with its settings (--lr={cfg.lr}) and "
            "--resume (resume=True), replace it with --force") in last_line(capsys)
    assert main(args + [f"--lr={cfg.lr}", "--resume"]) == 0                        # the advice works


def test_a_run_that_ends_worse_than_a_uniform_guess_says_it_did_not_learn(world, tmp_path, capsys):
    "B15 (pass 25): lr=10 finished with a val loss of 23.5 nats and exit 0, where a uniform guess scores 1.61; only a NaN counted as diverging."
    args = ["train", f"--data_dir={world / 'data'}", *SMALL, "--max_iters=40", "--eval_interval=20"]
    assert main(args + [f"--out_dir={tmp_path / 'hot'}", "--lr=10"]) == 0
    assert "than a uniform guess over the 5 tokens" in (err := capsys.readouterr().err) and "try a smaller lr (now 10) with --force" in err, err
    assert main(args + [f"--out_dir={tmp_path / 'ok'}"]) == 0 and "uniform guess" not in capsys.readouterr().err


def test_an_export_past_the_file_size_limit_names_the_limit(world, tmp_path):
    "B61 (pass 25): safetensors' own 'I/O error: File too large (os error 27)' reached the line, without the limit train and prepare name."
    r = subprocess.run(["bash", "-c", f"ulimit -f 10; exec {shlex.quote(CLI)} export {shlex.quote(str(world / 'done'))} {shlex.quote(str(tmp_path / 'ex'))}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == f"zo-gpt export: failed: File too large; files may be at most 10.2 kB here (ulimit -f): {tmp_path / 'ex' / 'model.safetensors'}"
    assert not (tmp_path / "ex").exists()


def test_a_ckpt_link_that_loops_is_told_as_a_loop(tmp_path, capsys):
    "A32 (pass 25): a ckpt.pt linked to itself was told as a link to a file that does not exist."
    (run := tmp_path / "run").mkdir(); (run / "ckpt.pt").symlink_to("ckpt.pt")
    assert main(["sample", "--run", str(run)]) == 1
    assert last_line(capsys).endswith(f"no checkpoint at {run / 'ckpt.pt'}: {run / 'ckpt.pt'} is a symbolic link to ckpt.pt, which leads round in a loop: move the link away")


def test_explain_finds_the_runs_own_dataset_where_the_current_folder_has_another_of_its_name(world, tmp_path, monkeypatch, capsys):
    "B52 (pass 26): from a folder with another d1, explain took that d1 and advised remaking it with --force, over the user's other dataset."
    (w := tmp_path / "w").mkdir(); shutil.copytree(world / "data", w / "d1"); (x := tmp_path / "x").mkdir(); shutil.copytree(world / "data2", x / "d1")
    monkeypatch.chdir(w)
    assert main(["train", "--data_dir=d1", "--out_dir=r1", *SMALL, "--max_iters=4", "--eval_interval=2"]) == 0
    monkeypatch.chdir(x); capsys.readouterr()
    assert main(["explain", "../w/r1"]) == 0 and "the boundary" in capsys.readouterr().out   # the run's own, by its absolute path
    assert main(["explain", "../w/r1", "--data", "d1"]) == 1                        # B49: another given, the run's own intact
    assert last_line(capsys).endswith(f"its own is in {w / 'd1'}: give that folder, or leave --data out")
    shutil.rmtree(w / "d1")                                                       # gone: the other d1 is told, and the remake is of the run's own place
    assert main(["explain", "../w/r1"]) == 1
    line = last_line(capsys)
    assert "d1 holds another dataset" in line and f"--out {w / 'd1'}" in line and "--out d1 " not in line, line


def test_a_dataset_file_link_that_loops_is_told_as_a_loop(world, tmp_path, capsys):
    "A31 (pass 26): a train.bin linked to itself was told as a link to a file that does not exist now."
    shutil.copytree(world / "data", data := tmp_path / "data"); (data / "train.bin").unlink(); (data / "train.bin").symlink_to("train.bin")
    assert main(["train", f"--data_dir={data}", f"--out_dir={tmp_path / 'run'}", *SMALL, "--max_iters=2"]) == 1
    assert f"{data / 'train.bin'} is a symbolic link to train.bin, which leads round in a loop: move the link away" in last_line(capsys)


def test_a_full_disk_at_the_runs_last_files_names_the_way_on(tiny_data, tmp_path, capsys, monkeypatch):
    "B36 (pass 29): loss.png that did not fit was told as 'No space left on device' with no next step."
    import errno
    import zo_gpt.train as train_mod
    args = ["train", f"--data_dir={tiny_data}", f"--out_dir={tmp_path / 'run'}", *SMALL, "--max_iters=4", "--eval_interval=2"]
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "summary.json"))
    with monkeypatch.context() as m:
        m.setattr(train_mod, "run_summary", full)
        assert main(args) == 1
    assert last_line(capsys).endswith(f"No space left on device: {tmp_path / 'run' / 'summary.json'}; the checkpoint keeps the run: "
                                      "make room, then the same arguments with --resume (resume=True) write loss.png and summary.json")
    assert main([*args, "--resume"]) == 0 and (tmp_path / "run" / "summary.json").is_file()   # the advice works
    assert main([*args, "--reuse"]) == 0


def test_memory_running_out_as_the_libraries_load_is_one_line_even_for_the_search_that_follows(monkeypatch, capsys):
    "CI on a fresh clone: under ulimit -d 50000, numpy ran out compiling its bytecode, and the search for a hiding module ran out too."
    import zo_gpt
    def out(*a, **k): raise MemoryError()
    monkeypatch.setattr(zo_gpt, "_run", out)
    monkeypatch.setattr(zo_gpt, "shadowing", out)
    monkeypatch.setattr(sys, "argv", ["zo-gpt", "prepare"])
    assert zo_gpt.run() == 1
    assert capsys.readouterr().err.strip().startswith("zo-gpt prepare: failed: out of memory while loading the libraries zo_gpt uses")


def test_a_run_that_did_not_learn_is_told_what_helps(world, tmp_path, capsys):
    """The note for a model that ends far worse than a uniform guess (B49, pass 40): after 4 steps on the gpt2 vocabulary
    its loss was still falling, and the note's 'try a smaller lr' made it worse. It now says to train longer, which clears
    it; a run whose loss rose again is told to try a smaller lr, which clears it. The init_std check comes before the lr
    check that reads init_std (B41): init_std=1e30 was told to raise lr."""
    def note(): return [l for l in capsys.readouterr().err.splitlines() if l.startswith("note:")]
    args = ["train", f"--data_dir={world / 'gpt2'}", "--vocab=gpt2", f"--out_dir={tmp_path / 'g'}", *SMALL, "--eval_interval=2"]
    assert main(args + ["--max_iters=4"]) == 0
    [n] = note()
    assert re.search(r": it did not learn yet, though its loss was still falling \(10\.\d+ at the first step, 10\.\d+ at the last evaluation\): "
                     r"train it longer \(now max_iters=4\) with --force$", n), n
    assert main(args + ["--max_iters=60", "--force"]) == 0 and note() == []
    args = ["train", f"--data_dir={world / 'data'}", f"--out_dir={tmp_path / 'c'}", *SMALL, "--eval_interval=2", "--max_iters=40"]
    assert main(args + ["--lr=3"]) == 0 and [n.split(": it did not ")[-1] for n in note()] == ["learn; try a smaller lr (now 3) with --force"]
    assert main(args + ["--lr=1", "--force"]) == 0 and note() == []
    assert main(args + ["--init_std=1e30"]) == 2 and last_line(capsys).endswith("init_std must be > 0 and below 10, got 1e+30")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_stray_master_addr_names_the_group_it_could_not_join(world, tmp_path):
    "B21 (pass 40): WORLD_SIZE=1 with an address no one can find read 'could not join the other 0 processes'."
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": str(world), "LOCAL_RANK": "0", "MASTER_ADDR": "nohost.invalid",
           "MASTER_PORT": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([CLI, "train", f"--out_dir={tmp_path / 'run'}", *SMALL], capture_output=True, text=True, timeout=120, env=env)
    who = {1: "its process group (WORLD_SIZE=1)", 2: "the other 1 process", 3: "the other 2 processes"}[world]
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"zo-gpt train: failed: could not join {who}: MASTER_ADDR='nohost.invalid' is no address this machine can find; if no "
        "torchrun started this command, these variables are left from another job: unset RANK LOCAL_RANK WORLD_SIZE"], r.stderr


@pytest.mark.parametrize("name", ["tokens.json", "README.md"])
def test_an_export_that_fills_the_disk_names_the_file(world, tmp_path, capsys, monkeypatch, name):
    "B37 (pass 40): a disk that filled while export wrote tokens.json said 'No space left on device' and named no file."
    real = Path.write_text
    def write_text(self, *a, **k):
        if self.name == name: raise OSError(28, "No space left on device")   # as a full disk fails the write: no file named
        return real(self, *a, **k)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert main(["export", str(world / "done"), str(tmp_path / "hf")]) == 1
    assert last_line(capsys) == f"zo-gpt export: failed: No space left on device: {tmp_path / 'hf' / name}"
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("frac", ["1e-30", "1e-300"])
def test_a_tiny_val_frac_is_refused_at_once(tmp_path, frac):
    """B32 (pass 41): prepare --val-frac 1e-30 never ended: the search for the fewest sequences that give it a validation
    sequence stepped by one past 2**53, where n * val_frac no longer moves. It is refused at once, without a 30-digit n_seq."""
    r = subprocess.run([CLI, "prepare", "--out", str(tmp_path / "d"), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact",
                        "--val-frac", frac], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"zo-gpt prepare: error: val_frac={float(frac)!r} leaves the validation split empty: 200 sequences give 0 validation and "
        "200 training sequences; ask for a larger val_frac"], r.stderr
    assert not (tmp_path / "d").exists()


def test_write_checkpoint_replaces_no_other_file(world, tmp_path):
    """B44 (pass 41): write_checkpoint('d1/meta.json', ckpt) replaced a finished dataset's meta.json with a torch file, and
    write_checkpoint(path, {}) wrote an empty dict as a checkpoint."""
    from zo_gpt.checkpoint import load_checkpoint, write_checkpoint
    shutil.copytree(world / "data", tmp_path / "d"); shutil.copytree(world / "done", tmp_path / "r")
    before = (tmp_path / "d" / "meta.json").read_bytes()
    ckpt = load_checkpoint(tmp_path / "r" / "ckpt.pt")
    with pytest.raises(ConfigError, match=r"is a file that is no checkpoint \(empty, damaged or another kind\), which write_checkpoint does not replace"):
        write_checkpoint(tmp_path / "d" / "meta.json", ckpt)
    assert (tmp_path / "d" / "meta.json").read_bytes() == before
    for bad, what in (({}, "one without model, optimizer"), ([], "list")):
        with pytest.raises(ConfigError, match=f"ckpt must be a checkpoint, a dict with model, .*, got {what}"): write_checkpoint(tmp_path / "new.pt", bad)
    assert not (tmp_path / "new.pt").exists()
    write_checkpoint(tmp_path / "r" / "ckpt.pt", ckpt)                          # a checkpoint over a checkpoint: as a run does
    assert load_checkpoint(tmp_path / "r" / "ckpt.pt")["iter"] == ckpt["iter"]


def test_precision_and_patterns_figure_name_what_is_wrong():
    "B4, B5 (pass 41): precision('float8') and patterns_figure's heads 99 or 2-d pattern raised torch's or numpy's own errors."
    from zo_gpt.export import patterns_figure
    from zo_gpt.model import precision
    for args, message in ((("float8",), "device must be a torch device (see get_device), got 'float8'"), ((None,), "got None"),
                          (("cpu", True, "no"), "flush_denormal must be True or False, got 'no'"), (("cpu", 1), "tf32 must be True or False, got 1")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            with precision(*args): pass
    pattern = torch.rand(2, 8, 8)
    for args, message in (((pattern, {}, 0, 4), "heads must be {head: title} for one head or more, from 0 to 1, got {}"),
                          ((pattern, {99: "a"}, 0, 4), "got {99: 'a'}"), ((pattern[0], {0: "a"}, 0, 4), "an (n_head, T, T) tensor, got Tensor (8, 8)"),
                          ((pattern, {0: "a"}, 6, 2), "0 <= lo < hi <= T = 8, got lo=6, hi=2"), ((pattern, {0: "a"}, 0, 9), "got lo=0, hi=9")):
        with pytest.raises(ConfigError, match=re.escape(message)): patterns_figure(*args)
    patterns_figure(pattern, {0: "a", 1: "b"}, 2, 6)


def test_advice_works_where_stderr_cannot_write_its_path(tmp_path):
    """B15 (pass 41): under PYTHONIOENCODING=latin-1, the advice for a missing --data_dir=nodata🙂 read `zo-gpt prepare --out
    'nodata\\U0001f642'`, as stderr writes what it cannot encode, and followed it made a folder of that name. Such a
    character is now given as its bytes in bash's $'...', which the shell reads back as the name."""
    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([CLI, "train", "--data_dir=nodata\U0001f642", "--out_dir=r", *SMALL, "--max_iters=2"], cwd=tmp_path,
                       capture_output=True, env=env, timeout=120)
    line = r.stderr.decode("latin-1").strip().splitlines()[-1]
    assert r.returncode == 1 and (m := re.search(r"`(zo-gpt prepare [^`]*)`", line)), line
    assert m.group(1) == "zo-gpt prepare --out $'nodata\\xf0\\x9f\\x99\\x82' --vocab compact", line
    subprocess.run(["bash", "-c", m.group(1).replace("zo-gpt", shlex.quote(CLI), 1) + " --n-seq 200 --seq-len 60"], cwd=tmp_path,
                   env=env, timeout=120, check=True, capture_output=True)
    assert (tmp_path / "nodata\U0001f642" / "meta.json").is_file()                      # the advice made the folder it named


def test_a_loop_of_ones_own_does_not_write_over_another_run(world, tmp_path):
    """B45 (pass 41): new_run, take_step and save_checkpoint with out_dir a finished run's folder replaced its ckpt.pt, and
    MetricsLog in such a loop would empty its metrics.jsonl; fit refuses that folder without --force. A loop that went on
    from the run there (restore) writes it."""
    from zo_gpt.checkpoint import restore, save_checkpoint
    from zo_gpt.config import parse_overrides
    from zo_gpt.train import Checkpointer, new_run, take_step
    run = tmp_path / "run"; shutil.copytree(world / "done", run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    cfg = make_config("cpu", parse_overrides([*SMALL, f"--data_dir={world / 'data'}", f"--out_dir={run}", "--max_iters=4", "--eval_interval=2"]))
    data = load_dataset(world / "data")
    state = new_run(cfg, data, torch.device("cpu")); take_step(state)
    with pytest.raises(TrainingError, match="holds a run \\(ckpt.pt\\) that this loop did not go on from"): save_checkpoint(state)
    for cb in (MetricsLog(), Checkpointer()):
        with pytest.raises(TrainingError, match="fit\\(overwrite=True\\) replaces it"): cb.on_fit_start(state)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    (tmp_path / "new").mkdir(); cfg.out_dir = str(tmp_path / "new")
    state = new_run(cfg, data, torch.device("cpu")); take_step(state)
    assert save_checkpoint(state) == save_checkpoint(state) == str(tmp_path / "new" / "ckpt.pt")   # a folder without a run, then its own
    state = new_run(cfg, data, torch.device("cpu")); restore(state, tmp_path / "new" / "ckpt.pt"); take_step(state)
    save_checkpoint(state)                                                       # the run it went on from
    assert torch.load(tmp_path / "new" / "ckpt.pt", weights_only=True)["iter"] == 2


def test_step_model_takes_only_a_gpt_and_flags():
    "B13 (pass 42): step_model(m, 'no', ...) compiled the model, as the text 'no' is true to Python; step_model(None, ...) returned None."
    from zo_gpt.model import GPT, GPTConfig, step_model
    m, cpu = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=5)), torch.device("cpu")
    with pytest.raises(ConfigError, match="compile must be True or False, got 'no'"): step_model(m, "no", False, 0, cpu)
    with pytest.raises(ConfigError, match="ddp must be True or False, got 'no'"): step_model(m, False, "no", 0, cpu)
    with pytest.raises(ConfigError, match="model must be a GPT"): step_model(None, False, False, 0, cpu)
    assert step_model(m, False, False, 0, cpu) is m


def test_an_export_under_stripped_docstrings_says_what_to_unset(world, tmp_path):
    """B20 (pass 43): under PYTHONOPTIMIZE=2 transformers printed a page of errors about missing docstrings as it loaded,
    and the line did not name the setting; the API raised a bare ValueError."""
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    r = subprocess.run([CLI, "export", str(world / "done"), str(tmp_path / "ex")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.strip() == ("zo-gpt export: error: transformers cannot load with Python's docstrings "
                                                                      "stripped (PYTHONOPTIMIZE=2 or python -OO): it reads them; unset PYTHONOPTIMIZE, or run without -OO"), r
    assert not (tmp_path / "ex").exists()
    r = subprocess.run([sys.executable, "-OO", "-c", "from zo_gpt.export import hf_config\nfrom zo_gpt.model import GPTConfig\n"
                        "hf_config(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=5), 4)"], capture_output=True, text=True, timeout=300)
    assert r.stderr.strip().splitlines()[-1].startswith("zo_gpt.helpers.ConfigError: transformers cannot load"), r.stderr


def test_a_notebook_refuses_a_data_dir_it_cannot_use_before_making_its_folders(world, tmp_path):
    """A34 (pass 43): 03_train with an override's data_dir naming a run folder refused it in one line, but only after its
    parameter cell had made run_dir and its short/ folder. check_shared_run, which comes before, refuses it now."""
    from zo_gpt.shared_run import check_shared_run
    new = tmp_path / "new"
    with pytest.raises(DatasetError, match="is a run folder \\(it holds ckpt.pt\\), not a dataset"):
        check_shared_run(make_config("cpu", {"out_dir": str(new), "data_dir": str(world / "done")}), False)
    shutil.copytree(world / "data", damaged := tmp_path / "damaged")
    (damaged / "val.bin").write_bytes((damaged / "val.bin").read_bytes()[:-2])
    with pytest.raises(DatasetError, match="val.bin"): check_shared_run(make_config("cpu", {"out_dir": str(new), "data_dir": str(damaged)}), False)
    assert not new.exists()
    assert check_shared_run(make_config("cpu", {"out_dir": str(new), "data_dir": str(world / "data")}), False) == "train"
    assert check_shared_run(make_config("cpu", {"out_dir": str(new), "data_dir": str(tmp_path / "none")}), False) == "train"   # made there later


def test_a_sample_of_no_words_gives_no_fraction(world, monkeypatch, capsys):
    "B29 (pass 43): a sample that was only an end-of-text token printed \"0 words, fraction of '1': nan\"."
    import zo_gpt.model
    monkeypatch.setattr(zo_gpt.model, "sample_text", lambda *a, **k: ("<|endoftext|>", float("nan"), 0))
    assert main(["sample", "--run", str(world / "done"), "--tokens", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0 words: the sample ended at its first end-of-text token"


def test_a_checkpoint_copied_in_from_another_run_does_not_write_over_the_folders_record(world, tmp_path, capsys):
    """B13 (pass 44): a stopped run's folder given another run's ckpt.pt refused --resume with 'resume it with its settings',
    and that advice, followed, replaced the stopped run's metrics.jsonl, summary.json and loss.png with the other run's,
    without --force. Both now name the two runs; with the record moved away, the checkpoint's run goes on."""
    args = lambda run, *more: ["train", f"--data_dir={world / 'data'}", f"--out_dir={run}", "--max_iters=4", "--eval_interval=2", *SMALL, *more]
    shutil.copytree(world / "done", run := tmp_path / "run")
    assert main(args(other := tmp_path / "other", "--seed=7")) == 0
    shutil.copy(other / "ckpt.pt", run / "ckpt.pt"); capsys.readouterr()
    record = {n: (run / n).read_bytes() for n in ("metrics.jsonl", "summary.json", "loss.png")}
    assert main(args(run)) == 2 and "its ckpt.pt and summary.json are of two different runs (a ckpt.pt copied in?)" in last_line(capsys)
    for more in ([], ["--seed=7"]):
        assert main(args(run, "--resume", *more)) == 1
        assert last_line(capsys) == (f"zo-gpt train: failed: {run}: its ckpt.pt and summary.json are of two different runs (a ckpt.pt copied in?): "
                                     "going on from it would write over the other's summary.json, metrics.jsonl and loss.png; move those away, "
                                     "or start again with --force (overwrite=True) instead of --resume")
    assert {n: (run / n).read_bytes() for n in record} == record
    (kept := tmp_path / "kept").mkdir()
    for n in record: (run / n).rename(kept / n)
    assert main(args(run, "--resume", "--seed=7")) == 0   # the checkpoint's run, its record written again
    assert json.loads((run / "summary.json").read_text())["run_id"] == json.loads((other / "summary.json").read_text())["run_id"]


def test_a_model_past_the_address_space_limit_is_refused_before_torch_tries(tmp_path):
    """B35 (pass 44): under `ulimit -v`, GPT(GPTConfig(block_size=10**8)) fitted the free memory but not the limit, and torch's
    allocator failed with its own RuntimeError; the API's memory checks now count the room a limit leaves."""
    code = "from zo_gpt.model import GPT, GPTConfig\nGPT(GPTConfig(n_head=1, n_embd=16, block_size=10**8, vocab_size=5))"
    r = subprocess.run(["bash", "-c", f"ulimit -v 6000000; exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"], capture_output=True, text=True, timeout=300)
    assert r.stderr.strip().splitlines()[-1].startswith("zo_gpt.helpers.ConfigError: n_layer=1, n_embd=16, vocab_size=5, block_size=100,000,000 needs about 6.4 GB "
                                                        "of memory; the limit on this process's memory leaves "), r.stderr[-2000:]
    assert r.stderr.strip().endswith(": raise the memory limit (now ulimit -v 6000000)")


def test_settings_text_takes_only_pairs():
    "B3 (pass 44): settings_text({'lr': 5}) raised TypeError: 'int' object is not subscriptable."
    from zo_gpt.config import settings_text
    with pytest.raises(ConfigError, match=r"^diff must be config_differences' result, \{setting: \(the checkpoint's, now\)\}, got \{'lr': 5\}$"):
        settings_text({"lr": 5})
    assert settings_text({"lr": (0.1, 0.2)}, 1) == "lr=0.2" and settings_text({"lr": (0.1, 0.2)}, options=True) == "--lr=0.1"


@pytest.mark.parametrize("p, text", [(1e-300, "1e-300"), (0.9999999999, "0.9999999999"), (0.99995, "0.99995"), (0.9998, "0.9998")])
def test_a_p_near_0_or_1_is_described_as_itself(world, p, text):
    "B40 (pass 44), B14 (pass 46): prepare --p 1e-300 was described as 'p = 0.0000', and --p 0.9999999999 as 'p = 1': values prepare refuses."
    from zo_gpt.helpers import read_meta
    from zo_gpt.tokens import describe
    meta = read_meta(world / "data"); meta["config"] = {**meta["config"], "p": p}
    assert f", p = {text}, seed " in describe(meta) and ", p = 0.6667, seed " in describe(read_meta(world / "data"))


def test_a_notebook_without_gpt2s_files_is_refused_before_its_folders(tmp_path):
    "B11 (pass 47): offline, a notebook that must make its dataset was refused only after it had made its folders; check_shared_run refuses first."
    code = ("from zo_gpt.config import make_config; from zo_gpt.shared_run import check_shared_run; from zo_gpt.helpers import UserError\n"
            f"try: check_shared_run(make_config('cpu', {{'out_dir': {str(tmp_path / 'run')!r}}}))\n"
            "except UserError as e: print(type(e).__name__, e)")
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty"), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.stdout.startswith("TokenizerUnavailable could not load GPT-2's BPE files"), r.stdout + r.stderr[-2000:]
    assert not (tmp_path / "run").exists()
