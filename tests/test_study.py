"""The organism study: its bootstrap against hand-computed intervals, its verdicts on planted runs,
its stages resumed after a kill (every command of the suite replaced by a stand-in that writes what
the real one writes), and the labels of its figure."""

import json
import os

import pytest

from rebalance.errors import UsageError
from rebalance.organism import study
from rebalance.organism.study import RunResult, StudyConfig, paired_bootstrap, targets


def test_bootstrap_matches_hand_computed_intervals():
    # every problem solved by one run and missed by the other: no spread at all
    assert paired_bootstrap([1, 1, 1], [0, 0, 0], draws=200) == (100.0, 100.0)
    assert paired_bootstrap([0, 1, 0], [0, 1, 0], draws=200) == (0.0, 0.0)
    # differences (1, 0, 0, 0): a resample's mean is k/4 with k ~ Binomial(4, 1/4), so
    # P(k = 0) = 0.316 > 0.025 puts the lower end at 0, and P(k <= 2) = 0.949 < 0.975 <= P(k <= 3)
    # = 0.996 puts the upper end at 3/4
    assert paired_bootstrap([1, 0, 0, 0], [0, 0, 0, 0], draws=20_000) == (0.0, 75.0)
    # the sign follows the order of the runs, and the same seed gives the same interval
    assert paired_bootstrap([0, 0, 0, 0], [1, 0, 0, 0], draws=20_000) == (-75.0, 0.0)
    assert paired_bootstrap([1, 0, 1, 1, 0], [0, 0, 1, 0, 1]) == paired_bootstrap([1, 0, 1, 1, 0], [0, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="equal, non-zero length"):
        paired_bootstrap([1, 0], [1])


FAMILIES = ["loop"] * 10 + ["three"] * 10


def run(label, coef, loop, three, tokens):
    """A run that solves the first `loop` loop problems and the first `three` three-step ones."""
    correct = [int(i < loop) for i in range(10)] + [int(i < three) for i in range(10)]
    return RunResult(label, coef, correct, [tokens] * 20, 0, FAMILIES)


def test_targets_on_planted_runs():
    """Twenty problems, ten per family. Baseline 2 + 8 right at 100 tokens; dynamic 10 + 8 at 80
    (0.8 x); static -0.5 as accurate at 85 tokens (< 1.1 x 80 = 88: a rival); static -1 cheaper but
    40 points less accurate (not a rival); static +0.5 as accurate at 95 (>= 88: not a rival)."""
    base = run("baseline", None, 2, 8, 100)
    dyn = run("dynamic", None, 10, 8, 80)
    rival = run("static -0.5", -0.5, 10, 8, 85)
    cheap = run("static -1", -1.0, 10, 0, 40)
    dear = run("static 0.5", 0.5, 10, 8, 95)
    assert dyn.family_accuracy == {"loop": 100.0, "three": 80.0} and dyn.accuracy == 90.0
    t = targets([base, dyn, rival, cheap, dear], draws=2000)
    assert t["token_ratio"] == pytest.approx(0.8) and t["accuracy_gain"] == pytest.approx(40.0)
    assert t["rivals"] == ["static -0.5"] and not t["beats_sweep"]
    assert t["best_static"] == "static -0.5"  # as accurate as static 0.5, fewer tokens
    # loop: differences eight 1s and two 0s, so a resample of ten is all 0s with probability 0.2^10
    assert t["family_intervals"]["three"] == (0.0, 0.0) and t["family_intervals"]["loop"][0] > 0
    assert t["families_raised"] == ["loop"] and t["families_lowered"] == [] and t["families"]
    assert t["cheaper"]  # 0.8 x, and the interval of +40 points lies above -2
    t = targets([base, dyn, cheap, dear], draws=500)
    assert t["rivals"] == [] and t["beats_sweep"] and t["best_static"] == "static 0.5"
    worse = run("dynamic", None, 10, 0, 90)  # loses every three-step problem the baseline solved
    t = targets([base, worse, dear], draws=500)
    assert not t["cheaper"] and t["families_lowered"] == ["three"] and not t["families"]
    assert t["families_fewer_correct"] == ["three"]
    one_flip = run("dynamic", None, 10, 7, 80)  # one three-step problem lost: fewer, not lowered
    t = targets([base, one_flip, dear], draws=2000)
    assert t["families_fewer_correct"] == ["three"] and t["families_lowered"] == [] and t["families"]


def test_the_summary_over_seeds_counts_targets_and_shows_the_spread():
    def seed(n, ratio, gain, cheaper, beats, families, best):
        return {"seed": n, "targets": {"token_ratio": ratio, "accuracy_gain": gain, "cheaper": cheaper,
                                       "beats_sweep": beats, "families": families, "best_static": best}}

    lines = study.over_seeds([seed(0, 0.6, 10.0, True, False, True, "static -0.75"),
                              seed(1, 0.7, 20.0, True, False, False, "static -0.5"),
                              seed(2, 0.8, -3.0, False, True, True, "static -0.75")])
    # ratios 0.6, 0.7, 0.8: mean 0.70, sample sd 0.10; gains 10, 20, -3: mean 9.0, sd sqrt(133) = 11.5
    assert lines == [
        "over 3 seed(s): dynamic's tokens x baseline mean 0.70 (sd 0.10, 0.60 to 0.80); accuracy - baseline, "
        "points, mean +9.0 (sd 11.5, -3.0 to +20.0)",
        "seeds meeting each target: fewer tokens, accuracy kept 2/3; beats the static sweep 1/3; "
        "a family raised, none lowered 2/3",
        "most accurate static coefficient: seed 0: static -0.75, seed 1: static -0.5, seed 2: static -0.75"]
    one = study.over_seeds([seed(0, 0.6, 10.0, True, False, True, "static -0.75")])
    assert one[0] == ("over 1 seed(s): dynamic's tokens x baseline mean 0.60 (sd -, 0.60 to 0.60); accuracy - "
                      "baseline, points, mean +10.0 (sd -, +10.0 to +10.0)")


def test_boundaries_and_steps_are_named_from_the_step_texts():
    texts = ["First, 2 x 3 = 6.\n\n", "Then 6 + 4 = 10.\n\n", "But wait, I still need to add 5: 10 + 5 = 15.\n\n",
             "Wait, let me check: 2 x 3 = 6. Yes.\n\n", "The answer is \\boxed{15}."]
    assert study.boundary_kinds(texts, "three") == ["first", "before early end", "needed", "re-check", "answer"]
    assert study.boundary_kinds(texts, "rush")[1] == "before early end"
    assert study.boundary_kinds(texts, "loop") == ["first", "then", "needed", "re-check", "answer"]
    assert study.boundary_kinds(texts[:1] + texts[3:], "three") == ["first", "re-check", "answer"]
    assert study.step_kind("\n\n") == "other" and study.step_kind("Hmm, well") == "other"


class FakeSuite:
    """Stands in for the suite's commands: each writes the files the real one writes, from planted
    verdicts, and records that it ran. `fail_on` names a script that fails once (a kill)."""

    def __init__(self, families, fail_on=None):
        self.families, self.fail_on, self.calls = families, fail_on, []

    def __call__(self, args, log):
        script = args[0]
        self.calls.append(script)
        flags = dict(zip(args[1::2], args[2::2]))
        if script == self.fail_on:
            self.fail_on = None
            raise UsageError(f"`{script}` failed (exit -9)")
        if script == "merge_shards.py":
            merged = os.path.join(flags["--dir"], flags["--base"] + ".merged.jsonl")
            os.makedirs(flags["--dir"], exist_ok=True)
            coef = 0.0 if "static" not in flags["--base"] else float(flags["--base"].split("_")[0][len("static"):])
            texts = ["First, 2 x 3 = 6.\n\n", "Wait, let me check: 2 x 3 = 6. Yes.\n\n", "The answer is 6."]
            with open(merged, "w") as handle:
                for idx in range(int(flags["--expected"])):
                    handle.write(json.dumps({"idx": idx, "finish_reason": "length" if coef < 0 and idx == 0 else "eos",
                                             "generated_responses": ["".join(texts)], "step_texts": texts,
                                             "sentence_confidences": [1.0, 0.8, 0.9],
                                             "steer_coefs": [0.1, -0.8] if "steer_" in merged else []}) + "\n")
        elif script == "hidden_config_ridge.py":
            assert flags["--criterion"] == "steer" and flags["--model_name_or_path"]  # R^2 is flat on the organism
            return "7"
        elif script == "hidden_analysis_auto.py":
            os.makedirs(os.path.dirname(flags["--save_path"]), exist_ok=True)
            open(flags["--save_path"], "wb").close()
            with open(flags["--save_path"][:-3] + ".json", "w") as handle:
                json.dump({"layer": int(flags["--layer_id"]), "low_val_1": -0.5}, handle)
        elif script == "check.py":
            merged = flags["--generation_path"]
            steered = "steer_" in merged
            with open(merged[:-len(".jsonl")] + ".graded.jsonl", "w") as handle:
                for idx, family in enumerate(self.families):
                    ok = steered or family == "three"  # dynamic solves all; the others only `three`
                    handle.write(json.dumps({"idx": idx, "is_correct": [ok], "num_tokens": [50 if steered else 100]})
                                 + "\n")
            with open(merged[:-len(".jsonl")] + ".metrics.json", "w") as handle:
                json.dump({"accuracy": 0.0}, handle)
        return ""


def test_the_study_resumes_after_a_kill_between_stages(tmp_path, monkeypatch, capsys):
    config = StudyConfig(out=str(tmp_path / "study"), seen=6, heldout=8, sweep=(-0.5, 0.5), bootstrap=200)
    monkeypatch.setattr(study, "organism_model_dir", lambda recipe: str(tmp_path / f"organism-seed{recipe.seed}"))
    from rebalance.organism.recipe import write_sets

    write_sets(os.path.join(config.out, "Data"), config.seen, config.heldout)
    families = study.heldout_families(os.path.join(config.out, "Data"))
    fake = FakeSuite(families, fail_on="hidden_analysis_auto.py")
    monkeypatch.setattr(study, "Commands", lambda log: lambda argv, quiet=False: fake(list(argv), log))
    with pytest.raises(UsageError, match="hidden_analysis_auto.py"):
        study.run_study([3], config)
    assert fake.calls == ["transformer_inference_dp.py", "merge_shards.py", "hidden_config_ridge.py",
                          "hidden_analysis_auto.py"]
    fake.calls.clear()
    summaries = study.run_study([3], config)  # collection and layer are not run again
    assert fake.calls[:2] == ["hidden_analysis_auto.py", "transformer_inference_steer_dp.py"]
    assert fake.calls.count("transformer_inference_steer_dp.py") == 4  # baseline, dynamic, two static
    assert fake.calls.count("check.py") == 4 and "transformer_inference_dp.py" not in fake.calls
    fake.calls.clear()
    assert study.run_study([3], config)[0]["targets"] == summaries[0]["targets"] and fake.calls == []
    summary = summaries[0]
    assert summary["layer"] == 7 and summary["calibration"]["low_val_1"] == -0.5
    runs = {r["label"]: r for r in summary["runs"]}
    three = sum(f == "three" for f in families)
    assert runs["baseline"]["accuracy"] == pytest.approx(100.0 * three / len(families))
    assert runs["dynamic"]["accuracy"] == 100.0 and runs["dynamic"]["mean_tokens"] == 50.0
    assert runs["static -0.5"]["at_limit"] == 1 and runs["baseline"]["at_limit"] == 0
    assert summary["targets"]["token_ratio"] == 0.5 and summary["targets"]["beats_sweep"]
    assert runs["dynamic"]["coefs_by_boundary"] == {"first": [0.1] * 8, "re-check": [-0.8] * 8}
    assert runs["baseline"]["coefs_by_boundary"] == {}
    steps = summary["collection_steps"]
    assert steps["re-check"] == {"n": 6, "c": 0.8, "v": pytest.approx(0.01)} and steps["first"]["c"] == 1.0
    assert steps["answer"]["v"] == pytest.approx(0.0025)
    saved = json.loads((tmp_path / "study" / "seed3" / "summary.json").read_text())
    assert saved["targets"]["rivals"] == [] and (tmp_path / "study" / "study.md").read_text().count("## seed 3") == 1
    out = capsys.readouterr().out
    assert "| dynamic | 100.0 | 50.0 | 0.50 |" in out
    assert "re-check -0.80 (-0.80 to -0.80, 8)" in out and "re-check 0.800 / 0.01000 (6)" in out


def test_the_figure_names_every_panel_and_run(tmp_path):
    import matplotlib.pyplot as plt

    def summary(seed, layer):
        runs = [{"label": "baseline", "coef": None, "accuracy": 60.0, "mean_tokens": 80.0},
                {"label": "dynamic", "coef": None, "accuracy": 70.0, "mean_tokens": 60.0},
                {"label": "static -0.5", "coef": -0.5, "accuracy": 50.0, "mean_tokens": 40.0},
                {"label": "static 0.5", "coef": 0.5, "accuracy": 61.0, "mean_tokens": 90.0}]
        return {"seed": seed, "layer": layer, "runs": runs}

    fig = study.study_figure([summary(0, 24), summary(1, 12)])
    titles = [ax.get_title() for ax in fig.axes]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    notes = sorted(child.get_text() for child in fig.axes[1].texts)
    plt.close(fig)
    assert titles == ["seed 0 (layer 24)", "seed 1 (layer 12)"]
    assert legend == ["static sweep", "baseline (unsteered)", "dynamic ReBalance"]
    assert notes == ["-0.5", "0.5"]
    png = study.plot_study([summary(0, 24)], str(tmp_path / "s.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_held_out_set_without_families_is_named(tmp_path):
    folder = tmp_path / "Organism_Heldout"
    folder.mkdir()
    (folder / "test.jsonl").write_text('{"problem": "What is 2 x 3 + 4?", "answer": "10"}\n')
    with pytest.raises(UsageError, match=r"Organism_Heldout/test.jsonl:1: no 'family'"):
        study.heldout_families(str(tmp_path))


def test_a_held_out_set_larger_than_what_training_excludes_is_refused(capsys):
    from rebalance.organism.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["study", "--heldout", "401"])
    assert stop.value.code == 2 and "at most 400" in capsys.readouterr().err
