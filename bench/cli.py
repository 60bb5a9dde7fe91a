"""Start-up of the command line, as whole processes side by side: `zo-gpt --help` and `zo-gpt prepare --help` against
`python -c "import numpy, tiktoken"` (goal: within 2x), and `zo-gpt prepare` of the default dataset into a fresh folder
(goal: <= 0.5 s). Medians of 7 runs, interleaved so that a busy moment hits all of them alike."""
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(runs=7):
    with tempfile.TemporaryDirectory() as tmp:
        cmds = {"python -c 'import numpy, tiktoken'": [sys.executable, "-c", "import numpy, tiktoken"],
                "zo-gpt --help": [str(BIN / "zo-gpt"), "--help"],
                "zo-gpt prepare --help": [str(BIN / "zo-gpt"), "prepare", "--help"]}
        times = {name: [] for name in cmds}
        times["zo-gpt prepare (default dataset)"] = []
        for i in range(runs):
            for name, cmd in cmds.items(): times[name].append(wall(cmd))
            times["zo-gpt prepare (default dataset)"].append(wall([str(BIN / "zo-gpt"), "prepare", "--out", f"{tmp}/d{i}"]))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med["python -c 'import numpy, tiktoken'"]
    print(f"command line start-up, whole processes, median of {runs}:")
    for name, t in med.items():
        note = ""
        if "help" in name: note = f"  {t / base:.2f}x the imports (goal <= 2x: {'met' if t <= 2 * base else 'missed'})"
        if "dataset" in name: note = f"  (goal <= 0.5 s: {'met' if t <= 0.5 else 'missed'})"
        print(f"   {name:36} {t:6.3f} s{note}")


if __name__ == "__main__":
    main()
