"Export to transformers and TransformerLens: the same logits and excess, GPT-2's reference trained side by side, and one-line refusals."
import copy
import json
import re
import sys

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from zo_gpt.checkpoint import load_model
from zo_gpt.cli import main
from zo_gpt.evaluation import measure
from zo_gpt.export import (LogitsModel, check_exportable, export_run, no_progress_bars, to_hf, to_transformer_lens,
                           write_hf)
from zo_gpt.helpers import ConfigError
from zo_gpt.model import GPT, GPTConfig, make_optimizer
from zo_gpt.tokens import load_dataset


def shaken(cfg: GPTConfig, seed: int = 0) -> GPT:
    "A model with `cfg` whose weights, norms and biases are all moved off their initial values (ones and zeros)."
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def val_rows(path, n: int = 1000, width: int = 25):
    "The first `n` + 1 validation tokens of the dataset at `path` as inputs and targets, rows of `width`; and its meta."
    data = load_dataset(path)
    ids = torch.from_numpy(data.val[:n + 1].astype(np.int64))
    return ids[:-1].view(-1, width), ids[1:].view(-1, width), data.meta


def loaded(out) -> GPT2LMHeadModel:
    with no_progress_bars(): return GPT2LMHeadModel.from_pretrained(out).eval()


def run_readme(out) -> dict:
    "The README's program, run as written; the probabilities it prints."
    program = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    printed = []
    with no_progress_bars(): exec(program, {"print": printed.append})
    return printed[0]


def same_logits_and_excess(model, hf, x, y, meta):
    with torch.no_grad(): diff = (hf(x).logits - model(x)).abs().max().item()
    ours = measure(model, x, y, meta)["kl"].mean()
    theirs = measure(LogitsModel(lambda i: hf(i).logits), x, y, meta)["kl"].mean()
    assert diff < 1e-5 and 0 < ours and theirs == pytest.approx(ours, rel=5e-5)   # four significant digits


def test_a_compact_run_exports_to_a_folder_transformers_loads(finished_run, tiny_data, tmp_path):
    out = export_run(finished_run, tmp_path / "hf")
    model, ckpt = load_model(finished_run, device="cpu")
    hf = loaded(out)
    assert hf.config.vocab_size == 5 and hf.config.activation_function == "gelu" and hf.config.eos_token_id == 4
    x, y, meta = val_rows(tiny_data)
    same_logits_and_excess(model, hf, x, y, meta)
    table = json.loads((out / "tokens.json").read_text())
    assert [t["id"] for t in table] == [t["id"] for t in ckpt["tokens_table"]] and sorted(t["id"] for t in table) == [0, 1, 2, 3, 4]
    probs = run_readme(out)                            # the README's tokenizer: the compact table
    assert set(probs) == {"0", "1", " 0", " 1", "<|endoftext|>"} and sum(probs.values()) == pytest.approx(1, abs=1e-3)


def test_a_gpt2_vocabulary_model_without_biases_exports_with_zero_biases(tiny_gpt2_data, tmp_path):
    model = shaken(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=50304, bias=False))
    x, y, meta = val_rows(tiny_gpt2_data)
    out = write_hf(model, tmp_path / "hf", meta["tokens"])
    hf = loaded(out)
    assert hf.config.vocab_size == 50304 and hf.config.eos_token_id == 50256
    assert hf.transformer.h[1].attn.c_proj.bias.abs().max() == 0 and hf.lm_head.weight is hf.transformer.wte.weight
    same_logits_and_excess(model, hf, x, y, meta)
    readme = (out / "README.md").read_text()
    assert "tiktoken" in readme and "trained without biases" in readme and "50,304 rows" in readme
    assert set(run_readme(out)) == {"0", "1", " 0", " 1", "<|endoftext|>"}   # the README's tokenizer: GPT-2's


@pytest.mark.parametrize("vocab_size,bias", [(5, True), (50304, False)])
def test_transformer_lens_gives_our_logits_and_its_hooks(vocab_size, bias):
    model = shaken(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=vocab_size, bias=bias))
    tl = to_transformer_lens(model)
    x = torch.randint(0, min(vocab_size, 50257), (4, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): logits, cache = tl.run_with_cache(x)
    assert (logits - model(x)).abs().max() < 1e-4          # nothing folded or centred: raw logits
    assert cache["pattern", 1].shape == (4, 4, 64, 64) and torch.allclose(cache["pattern", 1].sum(-1), torch.ones(4, 4, 64))


@pytest.mark.parametrize("vocab_size,data", [(5, "tiny_data"), (50304, "tiny_gpt2_data")])
def test_gpt2_reference_implementation_trains_as_ours_does(vocab_size, data, request):
    "The same weights, batches and optimizer: transformers' GPT-2 (labels shifted inside it) and ours, ten steps."
    train = load_dataset(request.getfixturevalue(data)).train
    ours = shaken(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=vocab_size)).train()
    theirs = to_hf(ours).train()
    lr = 3e-3
    opts = [make_optimizer(m, lr, (0.9, 0.95), weight_decay=0.1) for m in (ours, theirs)]
    decayed = [[sum(p.numel() for p in g["params"]) for g in o.param_groups] for o in opts]
    assert decayed[0] == decayed[1]                        # the same parameters, with and without weight decay
    g = torch.Generator().manual_seed(0)
    def batch():
        starts = torch.randint(len(train) - 64, (8,), generator=g).numpy()
        return torch.from_numpy(np.stack([train[s:s + 64] for s in starts]).astype(np.int64))
    for step in range(10):
        rows = batch()
        losses = [ours(rows[:, :-1], rows[:, 1:]), theirs(rows, labels=rows).loss]
        assert abs(losses[0].item() - losses[1].item()) < 1e-5, step
        for m, o, loss in zip((ours, theirs), opts, losses):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step(); o.zero_grad(set_to_none=True)
    rows = batch()
    with torch.no_grad(): after = [ours(rows[:, :-1], rows[:, 1:]).item(), theirs(rows, labels=rows).loss.item()]
    assert abs(after[0] - after[1]) < 1e-5 and after[1] < losses[1].item() + 0.1
    # Where a gradient is no larger than rounding (the key bias's is 0 but for rounding: it adds the same number to
    # all of a query's scores), AdamW, dividing by the gradient's own size, steps differently in each model; the
    # weights stay well within one step (lr) of each other. A weight decayed in one model only would not.
    now = to_hf(ours).state_dict()
    assert max((now[k] - w).abs().max().item() for k, w in theirs.state_dict().items()) < lr / 10


def test_what_gpt2_cannot_hold_is_refused_in_one_line(tiny_gpt2_data, tmp_path):
    model = shaken(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=5))
    untied = copy.deepcopy(model)
    untied.lm_head.weight = torch.nn.Parameter(untied.wte.weight.detach().clone())
    for bad, words in ((untied, "not tied to its token embedding"), (torch.nn.Linear(2, 2), "must be a zo_gpt GPT")):
        with pytest.raises(ConfigError, match=words) as e: check_exportable(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="only 5 rows in its head"):        # GPT-2's ids in a 5-row head
        write_hf(model, tmp_path / "hf", load_dataset(tiny_gpt2_data).meta["tokens"])
    assert not (tmp_path / "hf").exists()


def test_the_export_command_and_its_one_line_refusals(finished_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "hf"
    def export(*args, code):
        assert main(["export", *map(str, args)]) == code
        said = capsys.readouterr()
        return said.out if code == 0 else said.err
    assert "wrote" in export(finished_run, out, code=0) and (out / "model.safetensors").exists()
    (out / "notes.txt").write_text("mine")
    refusals = [export(finished_run, out, code=2),                           # a folder that holds files
                export(tmp_path / "no-run", tmp_path / "other", code=1),    # a folder without a checkpoint
                export(finished_run, out / "notes.txt", code=2)]            # a file where a folder should be
    for err, words in zip(refusals, ("is not empty", "no checkpoint at", "is a file, not a folder")):
        assert err.count("\n") == 1 and err.startswith("zo-gpt export: ") and words in err, err
    assert "--force" in refusals[0]
    assert "wrote" in export(finished_run, out, "--force", code=0) and (out / "notes.txt").read_text() == "mine"
    monkeypatch.setitem(sys.modules, "transformers", None)                  # as without the interop extra
    err = export(finished_run, tmp_path / "bare", code=2)
    assert err.count("\n") == 1 and "pip install 'zo_gpt[interop]'" in err, err


def test_force_never_replaces_files_that_no_export_wrote(finished_run, tmp_path, capsys):
    "`zo-gpt export RUN . --force` in a project folder must not replace the project's README.md or config.json."
    project = tmp_path / "it's a project"                         # a quote in the path: the README's program still runs
    project.mkdir()
    (project / "README.md").write_text("my project")
    assert main(["export", str(finished_run), str(project), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "README.md, which no zo_gpt export wrote" in err, err
    assert (project / "README.md").read_text() == "my project" and not (project / "model.safetensors").exists()
    out = project / "hf"
    assert main(["export", str(finished_run), str(out)]) == 0
    assert main(["export", str(finished_run), str(out), "--force"]) == 0                  # an export is replaced
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    compile(code, "README.md", "exec")                                                      # the path is quoted right
    assert repr(str(out)) in code


def test_mean_ablation_sets_the_heads_given_as_a_number_a_list_or_an_array():
    from zo_gpt.export import mean_ablation
    mean_z = torch.arange(8.).reshape(4, 2)
    for heads, which in ((2, [2]), ([0, 3], [0, 3]), (torch.tensor([1, 2]), [1, 2]), (np.array([3]), [3]), ([], [])):
        z = mean_ablation(heads, mean_z)(torch.full((1, 3, 4, 2), -1.), None)
        assert all(torch.equal(z[0, t, h], mean_z[h] if h in which else torch.full((2,), -1.)) for t in range(3) for h in range(4)), heads
