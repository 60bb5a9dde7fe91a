"How a command ends: stop signals from the first instant to the last, a full standard output, a deleted working folder."
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SMALL

from zo_gpt.cli import main

TINY = ["--max_iters=4", "--eval_interval=2", *SMALL]


def python(code: str, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def one_line(r: subprocess.CompletedProcess) -> list:
    lines = [l for l in r.stderr.replace("\r", "\n").splitlines() if l.strip() and not l.startswith(("train:", "final evaluation:", "sample:"))]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines


def test_a_stop_signal_while_the_package_loads_is_one_line_and_130(tiny_data, tmp_path):
    # The signal arrives exactly while `run` imports the command line (and with it torch): an import hook sends it.
    r = python(f"""
        import importlib.abc, os, signal, sys
        class Stop(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "zo_gpt.cli": os.kill(os.getpid(), signal.SIGTERM)
        sys.meta_path.insert(0, Stop())
        from zo_gpt import run
        sys.argv = ["zo-gpt", "train", "--data_dir={tiny_data}", "--out_dir={tmp_path / 'run'}", {", ".join(map(repr, TINY))}]
        sys.exit(run())""")
    assert r.returncode == 130 and one_line(r) == ["zo-gpt train: interrupted"], r.stderr
    assert not (tmp_path / "run").exists()


def test_once_the_command_has_ended_no_signal_changes_its_exit_code(tiny_data, tmp_path):
    r = python(f"""
        import signal, sys
        from zo_gpt import run
        sys.argv = ["zo-gpt", "train", "--data_dir={tiny_data}", "--out_dir={tmp_path / 'run'}", {", ".join(map(repr, TINY))}]
        code = run()
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        signal.raise_signal(signal.SIGINT); signal.raise_signal(signal.SIGTERM)   # during the interpreter's exit, say
        sys.exit(code)""")
    assert r.returncode == 0 and one_line(r) == [], r.stderr
    assert "wrote" in r.stdout


def test_an_ignored_ctrl_c_stays_ignored_sigterm_still_stops_and_the_ending_once_decided_stays(tiny_data, tmp_path):
    # A script's `&` starts a command with Ctrl-C ignored: the terminal's Ctrl-C is not meant for it.
    r = python(f"""
        import os, signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from zo_gpt.config import make_config
        from zo_gpt.train import Callback, RunFiles, fit
        class Send(Callback):
            def __init__(self, sig): self.sig = sig
            def on_step(self, state, record):
                if state.iter == 2: os.kill(os.getpid(), self.sig)
        for sig in (signal.SIGINT, signal.SIGTERM):
            cfg = make_config("cpu", dict(data_dir="{tiny_data}", out_dir="{tmp_path}/" + sig.name, max_iters=4,
                                          eval_interval=2, block_size=8, batch_size=4, n_embd=16, eval_batches=1,
                                          final_eval=False))
            h = fit(cfg, callbacks=[Send(sig)], verbose=False)
            print(sig.name, h.interrupted, len(h.train))
        class Late(Callback):   # a stop signal once the run has ended, while its files are written
            def on_fit_end(self, state): os.kill(os.getpid(), signal.SIGTERM)
        cfg = make_config("cpu", dict(data_dir="{tiny_data}", out_dir="{tmp_path}/late", max_iters=2, eval_interval=2,
                                      block_size=8, batch_size=4, n_embd=16, eval_batches=1, final_eval=False))
        h = fit(cfg, callbacks=[Late(), RunFiles()], verbose=False)
        print(h.interrupted, os.path.exists("{tmp_path}/late/summary.json"))
        print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)""")
    out = r.stdout.split()
    assert r.returncode == 0 and out[:3] == ["SIGINT", "False", "4"] and out[3:5] == ["SIGTERM", "True"], (r.stdout, r.stderr[-2000:])
    assert int(out[5]) < 4, r.stdout                          # SIGTERM stopped the second run
    assert out[6:] == ["False", "True", "True"], r.stdout      # the third's files were written; Ctrl-C is still ignored


def test_a_ctrl_c_in_the_final_evaluation_stops_it_and_resume_finishes_it(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    r = python(f"""
        import os, signal, sys
        from zo_gpt.config import make_config
        from zo_gpt.train import Callback, Checkpointer, MetricsLog, RunFiles, fit
        class CtrlC(Callback):   # the user presses Ctrl-C once the final evaluation has begun
            def on_final_batch(self, state, done, total):
                if done and not state.interrupt: signal.raise_signal(signal.SIGINT)   # in this thread: handled before the next batch
        cfg = make_config("cpu", dict(data_dir="{tiny_data}", out_dir="{out}", max_iters=4, eval_interval=2, block_size=8,
                                       batch_size=4, n_embd=16, eval_batches=1, final_tokens=4000))
        h = fit(cfg, callbacks=[CtrlC(), MetricsLog(), Checkpointer(), RunFiles()], verbose=False)
        print(h.interrupted, h.final, len(h.train))""")
    assert r.returncode == 0 and r.stdout.split() == ["True", "None", "4"], (r.stdout, r.stderr[-2000:])
    assert "stopping; a second Ctrl-C (or stop signal) stops at once" in r.stderr
    args = ["train", f"--data_dir={tiny_data}", f"--out_dir={out}", "--max_iters=4", "--eval_interval=2", "--block_size=8",
            "--batch_size=4", "--n_embd=16", "--eval_batches=1", "--final_tokens=4000"]
    assert main(args) == 2                                             # a stopped run: only --resume continues it
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(   # B93 (pass 28): not "finished, but its files are not its own"
        "it stopped in its final evaluation, after its last step (4): continue it with --resume (resume=True), "
        "replace it with --force (overwrite=True), or choose another folder")
    assert main([*args, "--resume"]) == 0                              # the final evaluation alone, then the files
    assert (out / "summary.json").exists()


def test_sample_fails_when_its_output_cannot_be_written_and_not_when_its_reader_goes(finished_run):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "sample", "--run", str(finished_run), "--tokens", "50"],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 1 and one_line(r) == ["zo-gpt sample: failed: could not write to the standard output (No space left on device)"]
    r = subprocess.run(f"{shlex.quote(sys.executable)} -m zo_gpt.cli sample --run {shlex.quote(str(finished_run))} --tokens 20000 "
                       "| head -c 10", shell=True, capture_output=True, text=True, timeout=300)
    assert len(r.stdout) == 10 and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_deleted_working_folder_is_one_line(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    r = subprocess.run([sys.executable, "-c", "import os, sys; os.rmdir(os.getcwd()); from zo_gpt import run; "
                        "sys.argv = ['zo-gpt', 'sample', '--run', 'x']; sys.exit(run())"], cwd=gone,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and one_line(r) == ["zo-gpt sample: error: the current folder no longer exists; cd to another one and run the command again"]


def test_a_backend_that_matplotlib_does_not_know_does_not_stop_the_run(tiny_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "zo_gpt.cli", "train", f"--data_dir={tiny_data}", f"--out_dir={tmp_path / 'run'}",
                        *TINY], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "nonsense"}, timeout=300)
    assert r.returncode == 0 and one_line(r) == [], r.stderr[-2000:]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 10_000


def test_a_notebooks_own_pyplot_loads_past_a_backend_matplotlib_does_not_know():
    "The notebooks draw some figures with pyplot, imported after load_matplotlib (E152b): papermill with a bad MPLBACKEND runs."
    code = "from zo_gpt.helpers import load_matplotlib; load_matplotlib(); import matplotlib.pyplot as plt; plt.subplots(); print('drawn')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "nonsense"}, timeout=300)
    assert r.returncode == 0 and r.stdout == "drawn\n", r.stderr[-2000:]

def test_a_failed_command_never_removes_a_folder_another_holds(tmp_path):
    from zo_gpt import folders
    new = tmp_path / "a" / "b"
    folders._make(new, made := [])                   # what this command makes: a/ and a/b/
    assert [p for p, _ in made] == [new, new.parent]
    with folders.folder_lock(new, "out"):            # another command made it at the same moment, and holds it
        folders._remove_empty(made)                  # this one failed: it cleans up what it thinks it made
        assert new.is_dir()
    folders._remove_empty(made)                      # held by no one: removed, parents too
    assert not (tmp_path / "a").exists()


def test_every_dataset_hint_is_a_command_that_works(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "val.bin").write_bytes((data / "val.bin").read_bytes()[:-2])          # damaged
    args = ["train", f"--data_dir={data}", f"--out_dir={tmp_path / 'run'}", *TINY]
    for damage in ("truncated", "no meta.json"):
        capsys.readouterr()
        assert main(args) == 1
        hint = re.search(r"`zo-gpt (prepare [^`]+)`", capsys.readouterr().err)
        assert hint, damage
        assert main(shlex.split(hint.group(1))) == 0                                # the hint, as it is written
        assert main(args) == 0, damage                                            # and the run it was for
        shutil.rmtree(tmp_path / "run")
        (data / "meta.json").unlink()                                            # next: an interrupted prepare


def test_a_stop_while_a_stray_rank_waits_for_the_others_ends_the_command_at_once(tiny_data, tmp_path):
    "C15: RANK and WORLD_SIZE=2 left from another job: the wait to join (60 s, in torch's C++) takes SIGTERM at once."
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    p = subprocess.Popen([str(Path(sys.executable).parent / "zo-gpt"), "train", f"--data_dir={tiny_data}",
                          f"--out_dir={tmp_path / 'run'}", *TINY], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        first = p.stderr.readline()   # the command is waiting for the others once it says so
        assert first.startswith("joining 2 processes"), first
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=30)[1]   # the wait itself lasts 60 s
    finally: p.kill(); p.wait()
    assert p.returncode == 130 and rest.strip() == "zo-gpt train: interrupted" and not (tmp_path / "run").exists(), rest


def test_a_kernel_interrupt_in_any_cell_is_one_line_once_zo_gpt_is_imported(tmp_path):
    # Jupyter's stop button sends SIGINT to the kernel; the cell is a busy loop in numpy, far from any zo_gpt code.
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def run(code):
            msg_id, error, started = kc.execute(code), None, False
            while True:
                msg = kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id: continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream" and "looping" in content["text"] and not started:
                    started = True
                    km.interrupt_kernel()   # the cell has printed that it is in its loop: interrupt it there
                elif kind == "error": error = content
                elif kind == "status" and content["execution_state"] == "idle": return error
        assert run("import zo_gpt.data") is None
        error = run("import numpy as np\nprint('looping', flush=True)\nwhile True: np.linalg.inv(np.eye(50) + 1)")
        assert error["ename"] == "KeyboardInterrupt" and len(error["traceback"]) == 1, error
        assert "stopped before it finished" in error["traceback"][0]
        assert error["evalue"] == "the cell was stopped before it finished; run it again to go on"   # A5 (pass 36): for a client that shows ename: evalue
        # an interrupt that lands in a weakref's callback (as matplotlib's figures are collected): raised again, not lost
        error = run("import weakref\nclass A: pass\na = A(); r = weakref.ref(a, lambda r: exec('raise KeyboardInterrupt'))\n"
                    "del a\nfor i in range(10 ** 8): pass\nprint('not stopped')")
        assert error is not None and error["ename"] == "KeyboardInterrupt" and len(error["traceback"]) == 1, error
        # the stop button pressed twice (pass 33's A18): the second stop lands while the first is told, and does nothing; the
        # next cell takes a stop again (the interrupts below)
        error = run("import os, signal, zo_gpt\nreal = zo_gpt._half_imported\ndef twice():\n    zo_gpt._half_imported = real\n"
                    "    os.kill(os.getpid(), signal.SIGINT); return real()\nzo_gpt._half_imported = twice\nraise KeyboardInterrupt")
        assert error["traceback"] == ["KeyboardInterrupt: the cell was stopped before it finished; run it again to go on"], error
        assert run("import signal\nassert signal.getsignal(signal.SIGINT) is signal.default_int_handler") is None
        # an import stopped part-way (torch's, in pass 30's A12): a package of Python alone is imported afresh when the cell
        # runs again (pyparsing, pass 31's A58); one that had loaded compiled parts, which cannot load twice in one process,
        # is refused from then on in one line that says what works (a new kernel), not a "partially initialized module"
        import _csv
        marker = tmp_path / "loop"
        for pkg, part in (("purepkg", "part.py"), ("cpkg", Path(_csv.__file__).name)):
            (tmp_path / pkg).mkdir()
            shutil.copy(_csv.__file__, tmp_path / pkg / part) if part.endswith(".so") else (tmp_path / pkg / part).write_text("X = 1\n")
            (tmp_path / pkg / "__init__.py").write_text(f"from {pkg} import {part.split('.')[0]}\nimport os\n"
                                                         f"if os.path.exists({str(marker)!r}):\n    print('looping', flush=True)\n"
                                                         f"    while os.path.exists({str(marker)!r}): pass\n")
        marker.touch()
        error = run(f"import sys; sys.path.insert(0, {str(tmp_path)!r})\nimport purepkg")
        assert error["ename"] == "KeyboardInterrupt" and error["traceback"] == [
            "KeyboardInterrupt: the cell was stopped before it finished; run it again to go on"], error
        marker.unlink()
        assert run("import purepkg\nassert purepkg.part.X == 1") is None    # run again, as the line says: it goes on
        marker.touch()
        error = run("import cpkg")
        assert error["ename"] == "KeyboardInterrupt" and len(error["traceback"]) == 1, error
        assert "while it imported cpkg" in error["traceback"][0] and "restart the kernel" in error["traceback"][0], error
        marker.unlink()
        for code in ("import cpkg", "from cpkg import _csv"):
            error = run(code)
            assert error["ename"].endswith("HalfImported") and len(error["traceback"]) == 1, error
            assert error["traceback"][0].startswith("HalfImported: cpkg was stopped part-way") and "restart the kernel" in error["traceback"][0]
        error = run("try: import cpkg\nexcept Exception: print('swallowed')")   # pass 32's A10: "not installed", pip install
        assert error["ename"].endswith("HalfImported") and len(error["traceback"]) == 1, error
        # a part of a package stopped as it loads, the package itself loaded (torch._dynamo, as AdamW's first step imports it:
        # pass 34's A12): a part of a package of Python alone is imported afresh; a part of one that ships compiled parts is refused
        for pkg, compiled in (("pureouter", False), ("couter", True)):
            (tmp_path / pkg / "sub").mkdir(parents=True)
            (tmp_path / pkg / "__init__.py").write_text("")
            if compiled: shutil.copy(_csv.__file__, tmp_path / pkg / Path(_csv.__file__).name)
            (tmp_path / pkg / "sub" / "part.py").write_text("X = 2\n")
            (tmp_path / pkg / "sub" / "__init__.py").write_text(f"from {pkg}.sub import part\nimport os\nif os.path.exists({str(marker)!r}):\n"
                                                                 f"    print('looping', flush=True)\n    while os.path.exists({str(marker)!r}): pass\n")
            marker.touch()
            error = run(f"import {pkg}\nimport {pkg}.sub")
            marker.unlink()
            assert error["ename"] == "KeyboardInterrupt" and len(error["traceback"]) == 1, error
            if not compiled:
                assert error["traceback"] == ["KeyboardInterrupt: the cell was stopped before it finished; run it again to go on"], error
                assert run(f"import {pkg}.sub\nassert {pkg}.sub.part.X == 2") is None
            else:
                assert f"while it imported {pkg}.sub," in error["traceback"][0] and "restart the kernel" in error["traceback"][0], error
                error = run(f"import {pkg}.sub")
                assert error["ename"].endswith("HalfImported") and error["traceback"][0].startswith(f"HalfImported: {pkg}.sub was stopped"), error
                assert run(f"import {pkg}") is None                                # the package itself is not refused
        # an error raised while an interrupt was being handled (torch's profiler, stopped as it starts: pass 32's A11) is the
        # interrupt's one line; any other error keeps IPython's traceback, and zo_gpt's own errors their one line
        error = run("try: raise KeyboardInterrupt\nexcept KeyboardInterrupt: assert False, 'Profiler must be initialized'")
        assert error["traceback"] == ["KeyboardInterrupt: the cell was stopped before it finished; run it again to go on"], error
        error = run("1 / 0")
        assert error["ename"] == "ZeroDivisionError" and len(error["traceback"]) > 1, error
        error = run("from zo_gpt.config import make_config\nmake_config('cpu', {'lr': 'x'})")
        assert error["traceback"] == ["ConfigError: lr must be float, got 'x'"], error
        error = run("import os; os.environ['ZO_GPT_TRACEBACK'] = '1'\nprint('looping', flush=True)\nwhile True: pass")
        assert error["ename"] == "KeyboardInterrupt" and len(error["traceback"]) > 1, error   # the frames, when asked
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("stop_at", [2, 4])
def test_a_stop_during_an_evaluation_ends_it_between_batches_and_resume_scores_it_first(tiny_data, tmp_path, monkeypatch, stop_at):
    # B47 (pass 35): an evaluation of many batches took minutes after a stop signal; the last step's, too (stop_at=4).
    from zo_gpt import ladder
    from zo_gpt.config import make_config
    from zo_gpt.train import Callback, Checkpointer, MetricsLog, RunFiles, fit
    scored = []
    measure = ladder.measure
    monkeypatch.setattr(ladder, "measure", lambda *a, **k: scored.append(1) or measure(*a, **k))
    class Stop(Callback):   # the panel's stop button, pressed as the step's evaluation begins
        def on_step(self, state, record):
            if state.iter == stop_at: state.stop = True
    cfg = lambda name: make_config("cpu", dict(data_dir=str(tiny_data), out_dir=str(tmp_path / name), max_iters=4, eval_interval=2,
                                               block_size=8, batch_size=4, n_embd=16, eval_batches=3, final_eval=False))
    files = lambda: [MetricsLog(), Checkpointer(), RunFiles()]
    h = fit(cfg("run"), callbacks=[Stop(), *files()], verbose=False)
    assert len(scored) == 3 * (stop_at // 2 - 1) + 1                      # one batch of the stopped evaluation, not three
    assert h.interrupted and len(h.train) == stop_at and [r["iter"] for r in h.val] == list(range(2, stop_at, 2))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["interrupted"] is True   # the last step's too: not finished
    resumed = fit(cfg("run"), callbacks=files(), resume=True, verbose=False)
    whole = fit(cfg("whole"), callbacks=files(), verbose=False)
    assert not resumed.interrupted and [r["iter"] for r in resumed.val] == [2, 4]
    rows = lambda name: [{k: v for k, v in json.loads(l).items() if k != "time"}
                         for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert rows("run") == rows("whole")


def test_an_evaluation_stopped_by_its_tick_returns_none_but_never_throws_away_a_whole_one(finished_run):
    from zo_gpt.checkpoint import load_model
    from zo_gpt.config import config_from, fixed_batches, open_dataset
    from zo_gpt.ladder import evaluate_ladder
    model, ckpt = load_model(finished_run)
    cfg = config_from({**ckpt["config"], "eval_batches": 3})
    data = open_dataset(cfg)
    batches, seen = fixed_batches(data.val, cfg, "cpu"), []
    assert evaluate_ladder(model, batches, data.meta, tick=lambda done, total: seen.append((done, total)) or done == 1) is None
    assert seen == [(1, 3)]
    whole = evaluate_ladder(model, batches, data.meta, tick=lambda done, total: done == total)   # a stop after the last batch: it is done
    assert whole == evaluate_ladder(model, batches, data.meta)


def test_a_refused_command_leaves_no_folder_it_made_on_its_way_through_a_dot_dot(tiny_data, tmp_path, capsys, monkeypatch):
    "B36 (pass 36): `--out z/../d` made z/ to reach d, and a refusal left it behind; d, there before, was counted as made."
    from zo_gpt import folders
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_data, "d")
    assert main(["prepare", "--out", "z/../d", "--n-seq", "300", "--seq-len", "60", "--vocab", "compact"]) == 1
    assert "holds a dataset made with other arguments" in capsys.readouterr().err
    assert sorted(os.listdir()) == ["d"]
    assert main(["train", f"--data_dir={tiny_data}", "--out_dir=y/../d", *TINY]) == 2   # a dataset's folder is no run's
    assert sorted(os.listdir()) == ["d"]
    folders._make(Path("n/../m"), made := [])
    assert [str(p) for p, _ in made] == ["n/../m", "n"] and sorted(os.listdir()) == ["d", "m", "n"]
    folders._remove_empty(made)
    assert sorted(os.listdir()) == ["d"]


def test_a_module_beside_a_notebook_that_hides_a_library_is_one_line_naming_it(tmp_path):
    "B17 (pass 36): a learner's tqdm.py beside a notebook made the kernel's import of zo_gpt a page of import frames."
    from jupyter_client.manager import start_new_kernel
    (tmp_path / "tqdm.py").write_text("x = 1\n")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        shown = []   # what a notebook shows: the kernel's error message
        reply = kc.execute_interactive("import zo_gpt\nfrom zo_gpt.config import make_config", timeout=120,
                                       output_hook=lambda msg: shown.append(msg["content"]) if msg["msg_type"] == "error" else None)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "ModuleNotFoundError"
        assert reply["content"]["traceback"] == ["ModuleNotFoundError: tqdm.py in the current folder hides the module of that name that "
                                                 "zo_gpt loads, as Python looks there first (`python -m`, a notebook's kernel); rename "
                                                 "it, or work from another folder"], reply["content"]
        assert [(e["traceback"], f"{e['ename']}: {e['evalue']}") for e in shown] == [(reply["content"]["traceback"], reply["content"]["traceback"][0])]
        reply = kc.execute_interactive("import nonexistent_module_x", timeout=120, output_hook=lambda msg: None)
        assert len(reply["content"]["traceback"]) > 1     # any other missing module keeps IPython's own traceback
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)


def test_a_stop_that_lands_in_a_finalizer_still_stops_the_command(tmp_path):
    "A38 (pass 36): a Ctrl-C inside regex's Group.__del__, as export loads, was 'Exception ignored' and a traceback, and export ran on to exit 0."
    for ignore_ctrl_c in (False, True):   # started with `&`, a command ignores Ctrl-C: SIGTERM's stop is raised again
        r = python(f"""
            import signal, sys, time
            if {ignore_ctrl_c}: signal.signal(signal.SIGINT, signal.SIG_IGN)
            from zo_gpt import run
            import zo_gpt.cli
            class Finalizer:
                def __del__(self): raise KeyboardInterrupt   # where a stop signal landed
            def main():
                Finalizer()
                for _ in range(3000): time.sleep(0.01)
                print("not stopped")
                return 0
            zo_gpt.cli.main = main
            sys.argv = ["zo-gpt", "export", "{tmp_path / 'run'}", "{tmp_path / 'out'}"]
            sys.exit(run())""")
        assert (r.returncode, r.stderr, r.stdout) == (130, "zo-gpt export: interrupted\n", ""), (ignore_ctrl_c, r.stderr[-2000:])


def test_an_error_raised_while_a_half_imported_package_was_refused_is_the_refusals_line(tmp_path):
    """A3 (pass 44): 04_profile's cell, stopped while torch._inductor loaded, then run again: the refusal of that import
    (one line) came inside torch's profiler, whose clean-up then asserted, and the cell showed a page of both."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        setup = "import sys, zo_gpt\nsys.meta_path.insert(0, zo_gpt._Refuse({'half_done_pkg'}))"   # as a stopped import leaves it
        assert kc.execute_interactive(setup, timeout=120, output_hook=lambda msg: None)["content"]["status"] == "ok"
        cell = "try:\n    import half_done_pkg.sub\nfinally:\n    assert False, 'Profiler must be initialized before starting trace'"
        reply = kc.execute_interactive(cell, timeout=120, output_hook=lambda msg: None)["content"]
        assert reply["traceback"] == ["HalfImported: half_done_pkg was stopped part-way through its import earlier in this kernel: restart "
                                      "the kernel (Kernel > Restart Kernel...), then run the notebook again from the top"], reply
        reply = kc.execute_interactive("assert False, 'any other'", timeout=120, output_hook=lambda msg: None)["content"]
        assert len(reply["traceback"]) > 1   # an error of its own keeps IPython's traceback
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
