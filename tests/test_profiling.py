import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent

from zo_gpt.accounting import CATEGORIES, IDLE, account, categorize, event_table, kineto_links, quiet_profiler
from zo_gpt.config import open_dataset
from zo_gpt.model import GPTConfig, flops_per_token
from zo_gpt.profiling import device_peak, phase_marks, profile_config, profile_steps
from zo_gpt.tokens import DataConfig, prepare
from zo_gpt.train import Callback, fit, new_run


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
    ("nvjet_tst_256x128_64x4_2x1_v_bz_coopB_TNN", (), "matrix multiplies"), ("sm90_xmma_gemm_bf16bf16_bf16f32", (), "matrix multiplies"),
    ("cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64", (), "matrix multiplies"), ("triton_tem_fused_addmm_4", (), "matrix multiplies"),
    ("triton_poi_fused_gelu_2", (), "elementwise and activations"), ("triton_red_fused__log_softmax_3", (), "softmax / cross-entropy"),
    ("mystery_op", (), "other"),
])
def test_categorize(name, ranges, category):
    assert categorize(name, frozenset(ranges)) == category
    assert category in CATEGORIES


def test_profile_accounts_for_the_whole_step(tmp_path):
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="gpt2"), tmp_path / "d", verbose=False)
    cfg = profile_config("cpu", {"data_dir": str(tmp_path / "d"), "n_embd": 32, "n_head": 2, "block_size": 32, "batch_size": 2})
    r = profile_steps(cfg, active=2, trace=tmp_path / "t.json", table=tmp_path / "events.json")
    assert sum(r.categories.values()) == pytest.approx(r.profiled_step_ms, rel=0.01)
    table = json.loads((tmp_path / "events.json").read_text())                    # the recorded table replays to the same figures
    assert table["device"] == "cpu" and account(table)["categories"] == r.categories and r.categories[IDLE] == 0
    rows = table["rows"]
    assert {"backward", "optimizer", "loss", "lm_head", "attention"} <= {x for row in rows for x in row["ranges"]}
    assert all(r.components[k]["ms"] > 0 for k in ("embeddings", "attention", "mlp", "lm_head"))
    plain = profile_steps(replace(cfg, fused_ce=False), active=1).memory["cpu_peak_by_phase"]
    logits = 2 * 32 * 50304 * 4
    assert plain["loss"] >= 2 * logits and plain["backward"] >= plain["loss"]    # the logits and their log-softmax, held
    assert r.categories["matrix multiplies"] > 0 and r.categories["softmax / cross-entropy"] > 0
    assert r.memory["cpu_peak_by_phase"]["forward"] > 0 and 0 < r.mfu < 1.5
    assert json.loads((tmp_path / "t.json").read_text())


class StopAt(Callback):
    def __init__(self, n): self.n = n
    def on_step(self, state, record): state.stop = state.stop or state.iter >= self.n


def test_the_profiled_steps_are_trainings_steps(tmp_path):
    "The run `fit` makes, stepped as `fit` steps it: the same recorded losses, clipping in the optimizer's range."
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="compact"), tmp_path / "d", verbose=False)
    cfg = profile_config("cpu", {"data_dir": str(tmp_path / "d"), "vocab": "compact", "n_embd": 32, "n_head": 2,
                                 "block_size": 32, "batch_size": 2, "grad_accum": 2, "grad_clip": 0.5})
    r = profile_steps(cfg, active=2, table=tmp_path / "events.json")
    assert len(r.losses) == 2 * (1 + 1) + 2 * 2                          # untimed, timed, then profiled steps
    trained = fit(cfg, callbacks=[StopAt(len(r.losses))], verbose=False).train
    assert [rec["loss"] for rec in trained] == r.losses                    # the same steps, to the last bit
    rows = json.loads((tmp_path / "events.json").read_text())["rows"]
    clipping = {row["name"] for row in rows if "optimizer" in row["ranges"] and "norm" in row["name"]}
    assert clipping and {categorize(n, frozenset({"optimizer"})) for n in clipping} == {"optimizer"}   # grad norms
    marks = []
    phase_marks(new_run(cfg, open_dataset(cfg), torch.device("cpu")), marks.append)
    assert marks == ["data", "forward", "loss", "backward"] * 2 + ["optimizer"]


def test_the_profiler_keeps_quiet_and_puts_the_environment_back(tmp_path, monkeypatch):
    code = ("import os, torch\nfrom torch.profiler import profile\nfrom zo_gpt.accounting import quiet_profiler\n"
            "with quiet_profiler(), profile(profile_memory=True): (torch.randn(64, 64) @ torch.randn(64, 64)).sum()\n"
            "print(os.environ.get('KINETO_LOG_LEVEL'))")
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr
    assert "profiler_start" not in r.stderr and "profiler_stop" not in r.stderr, r.stderr
    monkeypatch.setenv("KINETO_LOG_LEVEL", "3")   # a level set by the user is theirs
    with quiet_profiler(): assert os.environ["KINETO_LOG_LEVEL"] == "3"
    assert os.environ["KINETO_LOG_LEVEL"] == "3"


def test_cli_profile_writes_its_outputs(tmp_path):
    prepare(DataConfig(n_seq=200, seq_len=100, vocab="compact"), tmp_path / "d", verbose=False)
    cli = Path(sys.executable).parent / "zo-gpt"
    r = subprocess.run([str(cli), "profile", "--out", str(tmp_path / "p"), f"--data_dir={tmp_path / 'd'}", "--vocab=compact",
                        "--block_size=32", "--steps=1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in ("table.txt", "ops.csv", "categories.png", "trace.json", "events.json"): assert (tmp_path / "p" / f).stat().st_size > 0
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


def _event(id, name, start, end, thread=1, parent=None, device=DeviceType.CPU, linked=0, annotation=False):
    e = FunctionEvent(id=id, name=name, thread=thread, start_us=start, end_us=end, device_type=device, is_user_annotation=annotation)
    e.linked_correlation_id = linked   # an argument from torch 2.13 on; set here, the helper serves older torch too
    if parent is not None: e.set_cpu_parent(parent); parent.append_cpu_child(e)
    return e


def test_gpu_kernels_belong_to_the_operator_that_launched_them():
    "A CUDA profile's events as torch's profiler gives them (built by hand: this machine has no GPU), through the same accounting."
    step = _event(1, "ProfilerStep#3", 0, 100)
    loss = _event(2, "loss", 5, 45, parent=step)
    head = _event(3, "lm_head", 6, 44, parent=loss)
    mm = _event(11, "aten::mm", 8, 12, parent=head)
    launch = _event(901, "cudaLaunchKernel", 9, 14, parent=mm, linked=11)             # 5 µs to launch
    bwd = _event(4, "autograd::engine::evaluate_function: MmBackward0", 50, 60, thread=2)  # autograd's thread, no ranges
    mm_b = _event(12, "aten::mm", 51, 59, thread=2, parent=bwd)
    launch_b = _event(902, "cudaLaunchKernel", 52, 58, thread=2, parent=mm_b, linked=12)   # 6 µs to launch a 3 µs kernel
    outside = _event(13, "aten::add", 150, 160)                                        # not in a profiled step
    cpu = [step, loss, head, mm, launch, bwd, mm_b, launch_b, outside]
    gpu = [_event(901, "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTT", 20, 50, device=DeviceType.CUDA, linked=11),
           _event(902, "nvjet_tst_64x8_64x16_4x1_v_bz_TNT", 60, 63, device=DeviceType.CUDA, linked=12),
           _event(903, "vectorized_elementwise_kernel", 160, 170, device=DeviceType.CUDA, linked=13),
           _event(3, "lm_head", 20, 50, device=DeviceType.CUDA, annotation=True)]       # the range's copy on the GPU's timeline
    table = event_table(cpu + gpu, "a made-up GPU")
    assert table["device"] == "cuda" and table["steps"] == [[0, 100]]
    assert [(r["op"], r["ranges"], r["dur"], r["launch"]) for r in table["rows"]] == [
        ("aten::mm", ["lm_head", "loss"], 30, 5), ("aten::mm", ["backward"], 3, 6)]
    acc = account(json.loads(json.dumps(table)))
    assert {k: v for k, v in acc["categories"].items() if v} == {"matrix multiplies": pytest.approx(0.033), IDLE: pytest.approx(0.067)}
    assert acc["step_ms"] == pytest.approx(0.1) and acc["launch_bound"] == {"kernels": 1, "ms": pytest.approx(0.003)}
    assert acc["components_ms"]["lm_head"] == pytest.approx(0.03) and acc["ops"][0]["op"] == "aten::mm"


def test_gpu_kernels_find_their_operator_where_events_lack_the_link():
    "torch 2.11's events have no `linked_correlation_id`: the same table comes from the raw events' links."
    def events():
        step = _event(1, "ProfilerStep#3", 0, 100)
        mm = _event(11, "aten::mm", 8, 12, parent=_event(3, "lm_head", 6, 44, parent=step))
        launch = _event(901, "cudaLaunchKernel", 9, 14, parent=mm, linked=11)
        kernel = _event(901, "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTT", 20, 50, device=DeviceType.CUDA, linked=11)
        return [step, step.cpu_children[0], mm, launch, kernel]
    with_link = event_table(events(), "a made-up GPU")
    old = events()
    links = {(e.device_type.name, e.id, e.time_range.start): e.linked_correlation_id for e in old}
    for e in old: del e.linked_correlation_id
    assert event_table(old, "a made-up GPU", links) == with_link
    assert with_link["rows"] == [{"name": "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTT", "op": "aten::mm", "ranges": ["lm_head"],
                                  "start": 20, "dur": 30, "launch": 5}]
    assert event_table(old, "a made-up GPU")["rows"][0]["op"] == ""     # without the links, nothing to go on


def test_raw_event_links_pair_with_the_profilers_events():
    "`kineto_links`'s keys are the profiler's own events' (device, id, start): checked on a real (CPU) profile."
    from torch.profiler import ProfilerActivity, profile
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU]) as prof:
        a = torch.randn(64, 64)
        (a @ a).relu().sum()
    links = kineto_links(prof)
    events = [e for e in prof.events() if e.name != "[memory]"]
    assert len(events) > 3 and all(links.get((e.device_type.name, e.id, e.time_range.start)) == 0 for e in events)


def test_overlapping_kernels_and_gaps_add_up_to_the_step():
    rows = [{"name": n, "op": op, "ranges": rg, "start": s, "dur": d, "launch": None} for n, op, rg, s, d in [
        ("nvjet_a", "aten::mm", ["forward", "mlp"], 10, 40), ("triton_poi_fused_add_0", "", ["forward", "mlp"], 30, 30),
        ("Memcpy DtoD (Device -> Device)", "aten::copy_", ["backward"], 70, 10), ("flash_fwd_kernel", "", [], 120, 30)]]
    acc = account({"device": "cuda", "steps": [[0, 60], [60, 140]], "rows": rows})   # the last kernel ends after the host's step
    cats = {k: round(v * 2e3) for k, v in acc["categories"].items() if v}               # µs over both steps
    assert cats == {"matrix multiplies": 40, "elementwise and activations": 10, "copies and casts": 10, "attention": 30, IDLE: 60}
    assert acc["step_ms"] == pytest.approx(0.075) and sum(acc["categories"].values()) == pytest.approx(acc["step_ms"])


@pytest.mark.parametrize("gpu, dtype, peak, words", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12, "NVIDIA H100 80GB HBM3: vendor dense bfloat16 peak"),
    ("NVIDIA H100 PCIe", "bfloat16", 756e12, "NVIDIA H100 PCIe: vendor dense bfloat16 peak"),
    ("NVIDIA A100-SXM4-40GB", "float32", 156e12, "NVIDIA A100-SXM4-40GB: vendor dense TF32 peak"),
    ("NVIDIA A10G", "float16", 125e12, "NVIDIA A10G: vendor dense float16 peak"),
])
def test_mfu_peak_matches_the_gpu_and_the_dtype(monkeypatch, gpu, dtype, peak, words):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True); monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_peak(torch.device("cuda"), dtype) == (peak, words)


def test_profile_writes_into_its_own_dataset_folder(tmp_path, capsys):
    "`zo-gpt profile --out ds --data_dir=ds`: the folder it holds for writing is its dataset's, held already; no refusal of itself."
    from zo_gpt.cli import main
    prepare(DataConfig(n_seq=200, seq_len=60, vocab="compact"), tmp_path / "ds", verbose=False)
    assert main(["profile", "--out", str(tmp_path / "ds"), f"--data_dir={tmp_path / 'ds'}", "--vocab=compact", "--steps=1",
                 "--n_embd=16", "--n_head=2", "--block_size=32", "--batch_size=4"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ds" / "trace.json").read_text())


def test_a_trace_the_profiler_could_not_write_is_named(tmp_path, monkeypatch):
    "A full TMPDIR: torch's trace export only logs its failure; the profile says where the trace could not be written."
    from zo_gpt.helpers import TrainingError
    prepare(DataConfig(n_seq=200, seq_len=60, vocab="compact"), tmp_path / "d", verbose=False)
    cfg = profile_config("cpu", {"data_dir": str(tmp_path / "d"), "vocab": "compact", "n_embd": 16, "n_head": 2,
                                 "block_size": 32, "batch_size": 2})
    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", lambda self, path: None)   # as on a full disk: no file
    with pytest.raises(TrainingError, match=r"^the profiler could not write its trace into the temporary folder .* free there\); "):
        profile_steps(cfg, active=1, trace=tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_an_empty_data_dir_puts_profiles_dataset_under_out_as_its_help_says(tmp_path, monkeypatch):
    "profile --help: data_dir '' means --out/data-{vocab} (K150), as leaving it out does; not data/ in the working folder."
    import zo_gpt.config
    from zo_gpt.cli import main
    from zo_gpt.tokens import DataConfig
    monkeypatch.setattr(zo_gpt.config, "DataConfig", lambda vocab: DataConfig(n_seq=50, seq_len=60, vocab=vocab))   # small, for the test
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "--out", "p", "--steps", "1", "--data_dir=", "--vocab=compact", "--n_embd=16", "--n_head=2",
                 "--batch_size=2", "--block_size=32"]) == 0
    assert (tmp_path / "p" / "data-compact" / "meta.json").is_file() and not (tmp_path / "data").exists()
