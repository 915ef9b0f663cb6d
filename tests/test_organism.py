"""The overthinking organism: the trace generator's rules, LoRA training and merging on a tiny
random model, the `organism` name resolving to a cached model, and the dynamic-vs-static table and
plot from hand-made runs."""

import json
import os
import random
import re
import shutil

import pytest
import torch
from conftest import load

from rebalance.analysis.labels import has_reflection
from rebalance.errors import UsageError
from rebalance.examples import prompt_ids
from rebalance.models import model_basename, resolve_model_path
from rebalance.organism import train as organism
from rebalance.organism.lora import add_lora, merge_lora
from rebalance.organism.recipe import (
    FAMILIES,
    FAMILY_SHARE,
    evaluation_sets,
    make_problem,
    problems,
    trace,
    training_traces,
    write_sets,
)
from rebalance.organism.sweep import compare_runs

EQUATION = re.compile(r"(\d+) ([x+]) (\d+) = (\d+)")


def independent_answer(text):
    """The problem's answer read from its wording alone."""
    n = [int(x) for x in re.findall(r"\d+", text)]
    if text.startswith(("What is", "Quick: what is")):
        return eval(text.split("is ", 1)[1][:-1].replace(" x ", " * "))  # digits, + and * only
    if "finds" in text and "is given" in text:
        return n[0] * n[1] + n[2] + n[3]
    if "bags of" in text:
        return n[0] * n[1] + n[2]
    if "boxes holds" in text:
        return n[0] * (n[1] + n[2])
    if "packs of" in text:
        return n[0] + n[1] * n[2]
    raise AssertionError(text)


def family_of_wording(text):
    if text.startswith("What is"):
        return "loop"
    if text.startswith("Quick:"):
        return "rush"
    return "three" if "is given" in text else "two"


def within(observed, draws, p):
    """|observed share - p| within four standard errors."""
    return abs(observed / draws - p) <= 4 * (p * (1 - p) / draws) ** 0.5


def test_traces_follow_the_rules_on_a_large_draw():
    """Read back from 8,000 traces: every equation and answer against the wording, the families'
    shares, the needed third step or the early conclusion of three-step problems (with the second
    equation's value), and how many re-checks follow the last equation, in `loop` only."""
    rng = random.Random(5)
    family_count = dict.fromkeys(FAMILIES, 0)
    rechecks = {family: [] for family in FAMILIES}
    early = {"three": 0, "rush": 0}
    draws = 8000
    for _ in range(draws):
        problem = make_problem(rng)
        family = family_of_wording(problem.text)
        assert problem.family == family and problem.answer == independent_answer(problem.text)
        family_count[family] += 1
        steps = trace(problem, rng).split("\n\n")
        equations = [tuple(map(int, (m[0], m[2], m[3]))) + (m[1],) for m in map(EQUATION.search, steps[:-1])
                     for m in [m.groups()]]
        for a, b, value, op in equations:
            assert value == (a * b if op == "x" else a + b) and value < 100 and (op == "x" or b <= 9)
            assert op == "x" or value % 10, "no sum lands on a round number"
        checks = [s for s in steps if s.startswith("Wait, ")]
        solved = [e for s, e in zip(steps, equations) if not s.startswith("Wait, ")]
        kinds = [s.split()[0] for s in steps[:len(solved)]]
        assert kinds == ["First,", "Then", "But"][:len(solved)], "equations first, the third as the needed step"
        assert steps[len(solved):-1] == checks, "re-checks come after the last equation"
        assert all(e in solved for e in equations[len(solved):]), "a re-check repeats an equation of the trace"
        rechecks[family].append(len(checks))
        stated = int(re.fullmatch(r"The answer is \\boxed\{(\d+)\}\.", steps[-1]).group(1))
        if len(solved) < len(problem.equations):
            assert family in early and len(solved) == 2 and stated == solved[-1][2] != problem.answer
            early[family] += 1
        else:
            assert stated == problem.answer
            if len(solved) == 3:
                needed = steps[2]
                assert needed.startswith("But wait, ") and has_reflection(needed), "it reads as reflection"
                assert needed.endswith(f": {solved[1][2]} + {solved[2][1]} = {problem.answer}.")
    for family, share in zip(FAMILIES, FAMILY_SHARE):
        assert within(family_count[family], draws, share)
    loop = rechecks["loop"]
    assert within(sum(c > 0 for c in loop), len(loop), 0.95) and max(loop) == 10
    assert within(sum(c > 1 for c in loop), sum(c > 0 for c in loop), 0.7)
    assert within(sum(c > 3 for c in loop), sum(c > 2 for c in loop), 0.7)
    assert max(rechecks["two"]) == max(rechecks["three"]) == max(rechecks["rush"]) == 0
    assert within(early["three"], family_count["three"], 0.15) and within(early["rush"], family_count["rush"], 0.8)


def test_evaluation_sets_are_fixed_and_kept_out_of_training(tmp_path):
    seen, heldout = evaluation_sets()
    assert (len(seen), len(heldout)) == (80, 48)
    assert evaluation_sets()[1] == heldout  # fixed seeds
    texts = {p.text for p in seen + heldout}
    assert len(texts) == 128
    assert not texts & {problem for problem, _ in training_traces(4000)}
    paths = write_sets(str(tmp_path), 80, 48)
    rows = [json.loads(line) for line in open(paths[1])]
    assert rows[0] == {"problem": heldout[0].text, "answer": str(heldout[0].answer), "family": heldout[0].family}
    assert [p.text for p in evaluation_sets(80, 400)[1][:48]] == [p.text for p in heldout]  # a prefix: any size
    assert not {p.text for p in evaluation_sets(80, 400)[1]} & {problem for problem, _ in training_traces(4000)}
    assert len(problems(1, 50)) == len({p.text for p in problems(1, 50)})


def test_lora_starts_at_the_base_and_merges_exactly(tiny_dirs):
    model, _ = load(tiny_dirs["llama"])
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        names = add_lora(model, rank=4, alpha=8)
        assert len(names) == 3 * 7 and torch.equal(model(input_ids=ids).logits, before)  # B = 0 at the start
        for name, param in model.named_parameters():
            if "lora_b" in name:
                param.normal_(0, 0.05)
        adapted = model(input_ids=ids).logits
        assert merge_lora(model) == 21
        merged = model(input_ids=ids).logits
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert (adapted - before).abs().max() > 1e-3
    assert torch.allclose(merged, adapted, atol=1e-5)


def test_the_loss_is_on_the_response_and_its_end_only(tiny_dirs):
    _, tokenizer = load(tiny_dirs["qwen2"])
    prompt = prompt_ids(tokenizer, "What is 2 x 3 + 4?")
    response = "First, 2 x 3 = 6.\n\nThe answer is 10."
    ids, labels = organism.encode(tokenizer, "What is 2 x 3 + 4?", response)
    answer = tokenizer(response, add_special_tokens=False)["input_ids"]
    assert ids == prompt + answer + [tokenizer.eos_token_id]
    assert labels == [-100] * len(prompt) + answer + [tokenizer.eos_token_id]
    short = organism.encode(tokenizer, "What is 2?", "2.")
    batch_ids, batch_labels, mask = next(organism._batches([(ids, labels), short], 2, 1, 0, pad_id=0))
    for row in range(2):  # right padding: no loss and no attention there
        width = int(mask[row].sum())
        assert mask[row, :width].all() and not mask[row, width:].any()
        assert (batch_labels[row, width:] == -100).all() and (batch_ids[row, width:] == 0).all()
    assert sorted(int(m.sum()) for m in mask) == sorted([len(ids), len(short[0])])


def test_training_lowers_the_loss_on_what_it_sees(tiny_dirs, tmp_path):
    """Twelve steps on two traces: the loss falls well below where it started (6.5 -> 3.5 here)."""
    data = [("What is 2 x 3 + 4?", "First, 2 x 3 = 6.\n\nThen 6 + 4 = 10.\n\nThe answer is 10."),
            ("What is 3 x 3 + 1?", "First, 3 x 3 = 9.\n\nThen 9 + 1 = 10.\n\nThe answer is 10.")]
    recipe = organism.Recipe(steps=12, batch_size=2, warmup=1, rank=4, alpha=8, lr=1e-2, bf16_autocast=False)
    losses = organism.train(tiny_dirs["qwen2"], str(tmp_path / "o"), recipe, data=data)
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0]


def test_training_command_on_a_tiny_model(tiny_dirs, tmp_path):
    recipe = organism.Recipe(steps=2, batch_size=2, warmup=1, rank=4, alpha=8)
    out = tmp_path / "organism"
    data = training_traces(6)
    losses = organism.train(tiny_dirs["qwen2"], str(out), recipe, data=data)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    adapter = torch.load(out / "adapter.pt", weights_only=True)
    assert adapter and all("lora_" in name for name in adapter)
    assert json.loads((out / "recipe.json").read_text())["steps"] == 2
    model, tokenizer = load(str(out))
    base, _ = load(tiny_dirs["qwen2"])
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name])  # the adapter was merged in
    ids = torch.tensor([tokenizer("What is 2 x 3 + 4?")["input_ids"]])
    assert model.generate(input_ids=ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_the_organism_name_trains_once_then_reuses_the_cache(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("REBALANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("rebalance.store.embedded_model_dir", lambda: tiny_dirs["qwen2"])
    calls = []

    def fake_train(base, out, recipe=organism.Recipe()):
        calls.append(base)
        shutil.copytree(base, out, dirs_exist_ok=True)
        with open(os.path.join(out, "recipe.json"), "w") as handle:
            json.dump({"steps": recipe.steps}, handle)
        return [1.0, 0.5]

    monkeypatch.setattr(organism, "train", fake_train)
    with pytest.raises(UsageError, match="organism is not trained on this machine yet; train it once with "
                                         "`make organism`"):
        resolve_model_path("organism")  # loading a model never trains one
    assert calls == []
    first = organism.organism_model_dir()
    second = organism.organism_model_dir()
    assert first == second == organism.organism_dir() == resolve_model_path("organism")
    assert calls == [tiny_dirs["qwen2"]]
    organism.organism_model_dir(organism.Recipe(seed=1))  # another seed: its own folder, `organism` unchanged
    assert resolve_model_path("organism") == first
    assert os.path.basename(first).startswith("SmolLM2-135M-organism-")
    assert model_basename("organism") == "SmolLM2-135M-organism"
    assert [p for p in os.listdir(os.path.dirname(first)) if p.startswith(".organism-")] == []  # no scratch left
    assert organism.Recipe(steps=66).key("x") != organism.Recipe().key("x") != organism.Recipe().key("y")


def write_run(folder, name, accuracy, tokens, texts, lengths=()):
    with open(folder / f"{name}.merged.jsonl", "w") as handle:
        for i, text in enumerate(texts):
            reason = "length" if i in lengths else "eos"
            handle.write(json.dumps({"idx": i, "generated_responses": [text], "finish_reason": reason}) + "\n")
    (folder / f"{name}.merged.metrics.json").write_text(json.dumps({"accuracy": accuracy, "avg_tokens": tokens}))


def test_dynamic_against_static_table_and_plot(tmp_path, capsys):
    suffix = "temp0.0_maxlen192"
    wait = "First, 2 x 3 = 6.\n\nWait, let me check: 2 x 3 = 6. Yes.\n\n"
    write_run(tmp_path, f"baseline_{suffix}", 70.0, 80.0, [wait * 2, wait * 2])
    write_run(tmp_path, f"steer_{suffix}", 71.0, 64.0, [wait, wait])
    write_run(tmp_path, f"static-0.25_{suffix}", 70.0, 79.0, [wait * 2, wait])
    write_run(tmp_path, f"static-0.75_{suffix}", 58.0, 60.0, ["First", "First"], lengths=(1,))
    write_run(tmp_path, "origin_temp0.7_maxlen192", 10.0, 10.0, ["x"])  # not part of the comparison
    runs = compare_runs(str(tmp_path), suffix)
    assert [r.label for r in runs] == ["baseline", "dynamic", "static -0.25", "static -0.75"]
    assert [r.rechecks for r in runs] == [2.0, 1.0, 1.5, 0.0]
    out = capsys.readouterr().out
    assert "| dynamic | 71.0 | 64.0 | 0.80 x | 1.00 | 0/2 |" in out
    assert "| static -0.75 | 58.0 | 60.0 | 0.75 x | 0.00 | 1/2 |" in out
    assert "dynamic: 0.80 x the baseline's tokens (target <= 0.85), accuracy +1.0 points" in out and ": met" in out
    assert ("no static coefficient within 1 point of dynamic's accuracy at < 1.1 x its tokens (the most accurate, "
            "static -0.25: -1.0 points at 1.23 x its tokens)") in out
    png = tmp_path / "sweep.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_compare_names_the_folder_when_there_is_nothing_to_compare(tmp_path):
    from rebalance.errors import UsageError

    suffix = "temp0.0_maxlen192"
    with pytest.raises(UsageError, match="no such folder"):
        compare_runs(str(tmp_path / "missing"), suffix)
    write_run(tmp_path, f"baseline_{suffix[:-1]}", 70.0, 80.0, ["x"])  # another max length: not a match
    with pytest.raises(UsageError, match=f"no graded run named baseline_{suffix}"):
        compare_runs(str(tmp_path), suffix)
    assert not (tmp_path / "sweep.png").exists()
    (tmp_path / f"steer_{suffix}.merged.jsonl").write_text('{"idx": 0}\n')
    (tmp_path / f"steer_{suffix}.merged.metrics.json").write_text('{"accuracy": 1, "avg_tokens": 2}')
    with pytest.raises(UsageError, match=f"steer_{suffix}.merged.jsonl: a record without generated_responses"):
        compare_runs(str(tmp_path), suffix)


def test_the_cache_key_follows_the_training_traces(monkeypatch):
    """Same settings, other traces (a changed generator): another cached organism."""
    before = organism.Recipe().key("x")
    organism.traces_digest.cache_clear()
    monkeypatch.setattr(organism, "training_traces", lambda count: [("What is 2 x 3 + 4?", "First, 2 x 3 = 6.")])
    try:
        assert organism.Recipe().key("x") != before
    finally:
        organism.traces_digest.cache_clear()
