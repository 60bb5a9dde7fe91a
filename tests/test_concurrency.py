"""Two commands on one folder, and runs ended at awkward moments: one writer per folder, a second command refused in
one line that names the first, the first untouched, and every ended run finishable with --resume."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import SMALL

from zo_gpt.helpers import ConfigError, TrainingError
from zo_gpt.folders import OWNER_FILE, folder_lock
from zo_gpt.train import Callback, Checkpointer, MetricsLog, fit
from zo_gpt.config import make_config

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
HOLD = "import sys\nfrom zo_gpt.folders import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()"


def zo(*args):
    return subprocess.run([str(BIN / "zo-gpt"), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)


def one_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith(("train:", "final evaluation:"))]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@pytest.fixture
def data(tiny_data):
    "200 sequences of 60 words, compact vocabulary, shared by the session's tests: commands here only read it."
    return tiny_data


def wait_for(condition, what, timeout=120):
    "Poll for a state (never a fixed sleep): the machine may be slow or busy."
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def holder(tmp_path):
    "Another process that holds a folder's lock until told to let go."
    procs = []
    def hold(folder):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p
    yield hold
    for p in procs:
        if p.poll() is None: p.communicate("", timeout=30)


def test_a_busy_folder_refuses_every_command_in_one_line_naming_its_writer(data, finished_run, tmp_path, holder):
    run, ds, prof = tmp_path / "run", tmp_path / "ds", tmp_path / "prof"
    shutil.copytree(finished_run, run)                                # a finished run of 4 steps on `data`
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for folder in (run, ds, prof): holder(folder)
    pids = {folder: open(folder / OWNER_FILE).read().split()[1] for folder in (run, ds, prof)}
    for folder, argv in [(run, ["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=8", *SMALL, "--force"]),
                         (run, ["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=4", "--eval_interval=2", *SMALL, "--resume"]),
                         (ds, ["prepare", "--out", ds, "--n-seq", "100", "--seq-len", "30", "--vocab", "compact"]),
                         (prof, ["profile", "--out", prof, f"--data_dir={data}", "--vocab=compact", "--block_size=32", "--steps=1"])]:
        r = zo(*argv)
        line = one_line(r)
        assert r.returncode == 2 and "is in use by process " + pids[folder] in line and str(folder) in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != OWNER_FILE} == before   # nothing touched
    assert not (ds / "meta.json").exists() and not list(prof.glob("*.txt"))


def test_the_folder_is_free_again_when_its_writer_ends_however_it_ends(tmp_path):
    folder = tmp_path / "f"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"in use by process {p.pid}"):
        with folder_lock(folder): pass
    p.kill(); p.wait(timeout=30)                                      # SIGKILL: no chance to clean up
    with folder_lock(folder): pass                                    # the operating system let go of its lock


def test_one_writer_whatever_thread_asks_even_the_holder(tmp_path):
    "The lock has no re-entrancy: each folder has one owner that takes it once, and a second taker is refused."
    said = []
    def second():
        try:
            with folder_lock(tmp_path / "f", "out_dir"): said.append("got it")
        except ConfigError as e: said.append(str(e))
    with folder_lock(tmp_path / "f", "out_dir"):
        t = threading.Thread(target=second)
        t.start()
        t.join()
        second()                                                      # the holder's own thread, again
    assert len(said) == 2 and all("is in use by process" in s for s in said), said
    t = threading.Thread(target=second)
    t.start()
    t.join()
    assert said[2] == "got it"                                        # free once the block is done
    with folder_lock(tmp_path / "new"): pass                         # made for nothing: no folder left behind
    assert not (tmp_path / "new").exists()


def test_a_refused_command_beside_a_live_run_harms_nothing(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=100000", "--eval_interval=20", *SMALL]
    live = subprocess.Popen([str(BIN / "zo-gpt"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(lambda: (run / "ckpt.pt").exists(), "the live run's first checkpoint")
        for argv in (args + ["--force"], args, args + ["--resume"], ["prepare", "--out", run, "--force"]):
            r = zo(*argv)
            said = "holds a run (ckpt.pt): a dataset goes in a folder of its own" if argv[0] == "prepare" else f"in use by process {live.pid}"
            assert r.returncode == 2 and said in one_line(r)
        assert live.poll() is None                                    # still training
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=120)
    finally:
        if live.poll() is None: live.kill()
    assert live.returncode == 130 and "Traceback" not in err, err[-2000:]
    stopped = int(err.split("stopped at step ")[1].split()[0])
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]   # whole lines, one run
    steps = [r["iter"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, stopped + 1))
    assert torch.load(run / "ckpt.pt", weights_only=True)["iter"] == stopped
    assert json.loads((run / "summary.json").read_text())["interrupted"]
    assert sorted(p.name for p in run.iterdir()) == sorted(["ckpt.pt", "metrics.jsonl", "summary.json", "loss.png"])


def test_a_finished_run_that_lost_its_summary_is_finished_by_resume(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=6", "--eval_interval=3", *SMALL]
    assert zo(*args).returncode == 0
    first = json.loads((run / "summary.json").read_text())
    lines = (run / "metrics.jsonl").read_text()
    for name in ("summary.json", "loss.png"): (run / name).unlink()   # as a Ctrl-C just after training leaves it
    r = zo(*args, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((run / "summary.json").read_text())
    assert again["final"] == first["final"] and (run / "loss.png").stat().st_size > 0
    assert (run / "metrics.jsonl").read_text() == lines                # nothing ran twice
    r = zo(*args, "--resume")
    assert r.returncode == 1 and "nothing to resume" in one_line(r)


class StopAt(Callback):
    def __init__(self, n): self.n = n
    def on_step(self, state, record):
        if state.iter >= self.n: state.stop = True


def test_a_torn_last_line_of_metrics_does_not_stop_resume(data, tmp_path):
    cfg = make_config("cpu", {"data_dir": str(data), "out_dir": str(tmp_path / "run"), "max_iters": 12, "eval_interval": 3,
                              "block_size": 32, "batch_size": 4, "n_embd": 16, "eval_batches": 1, "final_tokens": 2000})
    fit(cfg, callbacks=[StopAt(6), Checkpointer(), MetricsLog()], verbose=False)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f: f.write('{"kind": "train", "iter": 7, "lo')   # a kill mid-write
    h = fit(cfg, callbacks=[Checkpointer(), MetricsLog()], resume=True, verbose=False)
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "train"] == list(range(1, 13)) and h.final is not None


def test_the_lock_is_on_the_folder_so_a_clean_up_of_hidden_files_cannot_sidestep_it(data, tmp_path, holder):
    run = tmp_path / "run"
    holder(run)
    record = (run / OWNER_FILE).read_text()
    args = ["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=2", "--eval_interval=2", *SMALL]
    r = zo(*args)
    assert r.returncode == 2 and "is in use by process" in one_line(r)
    assert (run / OWNER_FILE).read_text() == record                    # a refused command leaves the holder's record be
    for f in run.iterdir(): f.unlink()                                 # a clean-up of hidden files, a sync tool
    for extra in ([], ["--force"]):
        r = zo(*args, *extra)
        assert r.returncode == 2 and "is in use by another process" in one_line(r)
    assert list(run.iterdir()) == []


def test_a_run_whose_folder_is_moved_away_stops_before_writing_into_another(data, tmp_path):
    run = tmp_path / "run"
    class MoveAway(Callback):
        def on_step(self, state, record):
            if record["iter"] == 1: run.rename(tmp_path / "moved"); run.mkdir()   # another folder under its name
    cfg = make_config("cpu", {"data_dir": str(data), "out_dir": str(run), "max_iters": 4, "eval_interval": 2, "block_size": 32,
                              "batch_size": 4, "n_embd": 16, "eval_batches": 1, "final_tokens": 2000})
    with pytest.raises(TrainingError, match="was moved, removed or replaced while this process held it"):
        fit(cfg, callbacks=[MoveAway(), MetricsLog(), Checkpointer()], verbose=False)
    assert list(run.iterdir()) == []                                   # nothing written into the new folder


def test_a_run_holds_its_dataset_for_reading(data, tmp_path, holder):
    "Runs share a dataset; a prepare cannot replace it under them, and a run does not start on one being written."
    ds = tmp_path / "ds"; shutil.copytree(data, ds)
    args = ["train", f"--data_dir={ds}", f"--out_dir={tmp_path / 'run'}", "--max_iters=100000", "--eval_interval=20", *SMALL]
    # its output to files: a pipe nobody reads fills up, and a run blocked writing to it cannot stop
    live = subprocess.Popen([str(BIN / "zo-gpt"), *map(str, args)], stdout=open(tmp_path / "live.out", "w"),
                            stderr=open(tmp_path / "live.err", "w"), text=True, env=ENV)
    try:
        wait_for(lambda: (tmp_path / "run" / "ckpt.pt").exists(), "the live run's first checkpoint")
        before = (ds / "meta.json").read_bytes()
        r = zo("prepare", "--out", ds, "--n-seq", "300", "--seq-len", "60", "--vocab", "compact", "--force")
        assert r.returncode == 2 and "is in use by another process" in one_line(r)
        assert (ds / "meta.json").read_bytes() == before
        r = zo("train", f"--data_dir={ds}", f"--out_dir={tmp_path / 'second'}", "--max_iters=2", "--eval_interval=2", *SMALL)
        assert r.returncode == 0, r.stderr[-2000:]                       # a second run reads it too
        live.send_signal(signal.SIGINT)
        assert live.wait(timeout=120) == 130
    finally:
        if live.poll() is None: live.kill()
    writer = holder(ds)                                                  # as a prepare writing the folder holds it
    r = zo("train", f"--data_dir={ds}", f"--out_dir={tmp_path / 'third'}", "--max_iters=2", "--eval_interval=2", *SMALL)
    assert r.returncode == 2 and f"data_dir={str(ds)!r} is in use by process {writer.pid}" in one_line(r)
    assert not (tmp_path / "third").exists()


def _swap(tmp_path, stop_at:int, fail_at:int|None, monkeypatch):
    """replace_together of three files, with a Ctrl-C that another thread takes after rename `stop_at` (and rename `fail_at`
    failing). The thread starts before the swap, as tqdm's monitor thread did in B91, so it has the signal mask it started with."""
    old, new = tmp_path / "old", tmp_path / "new"; old.mkdir(); new.mkdir()
    for n in "abc": (old / n).write_text("old"); (new / n).write_text("new")
    real, calls, go = os.replace, [], threading.Event()
    def stopper():
        go.wait(); signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    t = threading.Thread(target=stopper); t.start()
    def rename(src, dst):
        calls.append(dst)
        if len(calls) == fail_at: raise PermissionError(1, "Operation not permitted", str(src), None, str(dst))
        real(src, dst)
        if len(calls) == stop_at: go.set(); t.join()   # Python runs the handler in this, the main thread, at once
    monkeypatch.setattr(os, "replace", rename)
    return old


def test_a_stop_during_a_swap_waits_for_it_whichever_thread_takes_it(tmp_path, monkeypatch):
    """The swap ends whole, with the new files, and the stop is taken then: outside a command whose own --out it is (which
    drops it, its work done: test_robustness), it may be a dataset made on the way, and what comes after must stop (B150)."""
    from zo_gpt.folders import replace_together
    old = _swap(tmp_path, 2, None, monkeypatch)
    with pytest.raises(KeyboardInterrupt): replace_together(tmp_path / "new", old, ("a", "b", "c"))
    monkeypatch.undo()
    assert [(old / n).read_text() for n in "abc"] == ["new"] * 3


def test_a_stop_during_a_swap_that_fails_keeps_the_old_files_and_is_taken(tmp_path, monkeypatch):
    from zo_gpt.folders import replace_together
    old = _swap(tmp_path, 2, 5, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        replace_together(tmp_path / "new", old, ("a", "b", "c"))
    monkeypatch.undo()
    assert [(old / n).read_text() for n in "abc"] == ["old"] * 3



def test_only_the_swap_of_the_commands_own_folder_ends_its_work(tmp_path):
    "profile makes its dataset in a swap of its own on the way (B130): only the swap of the command's --out ends its work."
    from zo_gpt.folders import ON_PLACED, replace_together
    ended = []
    for f in ("out", "out/data", "new", "new_data"): (tmp_path / f).mkdir()
    for f in ("new", "new_data"): (tmp_path / f / "a").write_text(f)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    token = ON_PLACED.set((str(tmp_path / "out"), lambda: ended.append("ended")))   # takes the handlers' place, as the command line's does
    try:
        replace_together(tmp_path / "new_data", tmp_path / "out" / "data", ("a",))
        assert ended == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler   # a stop is still taken
        replace_together(tmp_path / "new", tmp_path / "out", ("a",))
        assert ended == ["ended"]
    finally:
        ON_PLACED.reset(token)
        for s, h in saved.items(): signal.signal(s, h)


def test_a_dataset_replaced_since_it_was_opened_is_not_trained_on(tiny_data, tmp_path):
    "A prepare --force between open_dataset and fit (A131: the panel keeps what it opened): fit says so, the panel opens it again."
    from zo_gpt.cli import main
    from zo_gpt.config import open_dataset
    from zo_gpt.ui import TrainingPanel
    ds = tmp_path / "ds"; shutil.copytree(tiny_data, ds)
    cfg = make_config("cpu", {"data_dir": str(ds), "out_dir": str(tmp_path / "r"), "max_iters": 2, "eval_interval": 2, "final_eval": False})
    opened, panel = open_dataset(cfg), TrainingPanel(cfg, run_dir=str(tmp_path / "pan"))
    try:
        kept = panel._dataset(cfg)
        assert main(["prepare", "--out", str(ds), "--n-seq", "100", "--seq-len", "60", "--vocab", "compact", "--p", "1/2", "--force"]) == 0
        with pytest.raises(TrainingError, match="was replaced since it was opened"): fit(cfg, data=opened, verbose=False)
        assert kept.meta["config"]["p"] != 0.5 and panel._dataset(cfg).meta["config"]["p"] == 0.5
    finally: panel.close()


def test_a_run_makes_its_dataset_in_an_empty_folder_it_would_hold(tmp_path, monkeypatch):
    "An empty dataset folder (made by hand, or left by a killed first use; A134, B145): the run makes the dataset there, not refuses itself."
    import contextlib
    import zo_gpt.config
    from zo_gpt.config import held_dataset
    from zo_gpt.tokens import DataConfig
    monkeypatch.setattr(zo_gpt.config, "DataConfig", lambda vocab: DataConfig(n_seq=50, seq_len=30, vocab=vocab))   # small, for the test
    (tmp_path / "ds").mkdir()
    for data_dir, make in ((str(tmp_path / "ds"), True), ("", False)):   # profile's own folder; train's default one
        monkeypatch.chdir(tmp_path); (tmp_path / "data" / "zero_one-compact").mkdir(parents=True, exist_ok=True)
        cfg = make_config("cpu", {"data_dir": data_dir, "out_dir": str(tmp_path / "r")})
        with contextlib.ExitStack() as reading:
            assert held_dataset(cfg, None, reading, make=make).meta["config"]["n_seq"] == 50


def test_of_two_readers_that_find_a_cut_swap_one_settles_it_and_the_other_waits(tiny_data, tmp_path):
    "Readers share a dataset's lock (A155): a second one waits while the first puts back what a killed prepare set aside."
    import fcntl
    ds = tmp_path / "ds"; shutil.copytree(tiny_data, ds)
    stage = ds / ".zo_gpt-stage-killed"; stage.mkdir()
    for n in ("train.bin", "val.bin", "meta.json"): os.replace(ds / n, stage / f"{n}.old")
    for n in ("train.bin", "val.bin"): (ds / n).write_bytes(b"new, moved in")            # meta.json still staged
    (stage / "meta.json").write_text("{}")
    (stage / ".moving").write_text("".join(f"{os.stat(d / n).st_ino} {n}\n" for d, n in ((ds, "train.bin"), (ds, "val.bin"), (stage, "meta.json"))))
    first = os.open(stage, os.O_RDONLY); fcntl.flock(first, fcntl.LOCK_EX)                # the first reader, settling it
    seen = []
    def second():
        with folder_lock(ds, "data_dir", shared=True): seen.append(sorted(p.name for p in ds.iterdir()))
    t = threading.Thread(target=second); t.start()
    ino = f":{os.stat(stage).st_ino} "
    while not any(ino in line and "->" in line for line in Path("/proc/locks").read_text().splitlines()):   # until it waits
        assert t.is_alive(), seen
        time.sleep(0.01)
    for n in ("train.bin", "val.bin", "meta.json"): os.replace(stage / f"{n}.old", ds / n)   # the first one's work
    shutil.rmtree(stage); os.close(first); t.join()
    assert seen == [["meta.json", "train.bin", "val.bin"]]
    assert all((ds / n).read_bytes() == (tiny_data / n).read_bytes() for n in ("train.bin", "val.bin", "meta.json"))


def test_a_loop_of_ones_own_is_refused_in_a_folder_another_kernel_took_as_its_own(data, tmp_path):
    """A20 (pass 33): a second kernel that ran on past its refused parameters cell ran 03_train's loop in the open (new_run,
    take_step, MetricsLog) into the folder the first kernel had taken, and the first read the two runs' lines mixed."""
    from zo_gpt.config import open_dataset
    from zo_gpt.train import RunFiles, new_run, take_step
    run = tmp_path / "run"
    kernel = "import sys\nfrom zo_gpt.notebooks import notebook_folders\nnotebook_folders('03_train', {'run_dir': sys.argv[1]})\n" \
             "print('held', flush=True); sys.stdin.read()"
    p = subprocess.Popen([sys.executable, "-c", kernel, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert p.stdout.readline().strip() == "held"
        cfg = make_config("cpu", {"data_dir": str(data), "out_dir": str(run), "block_size": 8, "batch_size": 4, "n_embd": 16, "max_iters": 2})
        state = new_run(cfg, open_dataset(cfg), torch.device("cpu"))
        for cb in (MetricsLog(), RunFiles(), Checkpointer()):
            with pytest.raises(ConfigError, match=f"^out_dir={re.escape(repr(str(run)))} is in use by"): cb.on_fit_start(state)
        assert sorted(f.name for f in run.iterdir() if not f.name.startswith(".")) == []
    finally:
        p.communicate("", timeout=30)
    log = MetricsLog()                                   # the kernel gone, the loop goes on as 03_train shows it
    log.on_fit_start(state); take_step(state, [log]); log.on_fit_end(state)
    assert [json.loads(l)["iter"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1]
