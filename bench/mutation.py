"""Mutation score of the modules where a wrong line changes results: for each module, mutmut
mutates it in a scratch copy of the repository and runs each mutant against the tests that cover
the mutated function (from the module's test files below); then one row per module: how many
mutants the tests killed, and every survivor.

    make mutation                                             # every module below (slow: a benchmark)
    make mutation MODULES="rebalance/control.py"              # some of them
    make mutation MODULES="rebalance/control.py" TESTS="tests/test_control.py tests/test_steering.py"

A survivor is a line the tests would not notice changing; each needs a test, or a reason why no
output can change (then `# pragma: no mutate` on it). Settings shared by every run: pyproject.toml
[tool.mutmut]. Results: bench/results/mutation.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = re.compile(r"^\s*(?P<key>\S+?\.x[_ǁ]\S*): (?P<status>.+)$")

# module -> the test files whose tests may cover it (mutmut narrows each mutant to the covering ones)
MODULE_TESTS = {
    "rebalance/control.py": ["tests/test_control.py", "tests/test_steering.py"],
    "rebalance/decoding/steering.py": ["tests/test_steering.py", "tests/test_engine.py"],
    "rebalance/analysis/layer_steering.py": ["tests/test_layer_steering.py"],
    "rebalance/decoding/steps.py": ["tests/test_steps.py", "tests/test_engine.py"],
    "rebalance/decoding/cache.py": ["tests/test_cache.py", "tests/test_engine.py"],
    "rebalance/files/shards.py": ["tests/test_shards.py"],
    "rebalance/files/names.py": ["tests/test_names.py"],
    "rebalance/files/cards.py": ["tests/test_cards.py"],
    "rebalance/grading/answers.py": ["tests/test_answers.py", "tests/test_grading.py", "tests/test_grading_table.py"],
    "rebalance/grading/equivalence.py": ["tests/test_equivalence.py", "tests/test_grading.py",
                                         "tests/test_grading_table.py"],
    "rebalance/grading/paper_rules.py": ["tests/test_paper_rules.py", "tests/test_grading_table.py"],
}


def scratch_copy(module: str, tests: list[str]) -> str:
    """The tracked files in a temporary folder (`<tmp>/repo`, with `<tmp>/shared` pointing at the
    shared data when it is beside this checkout), pyproject.toml narrowed to one module."""
    parent = tempfile.mkdtemp(prefix="rebalance-mutation-")
    folder = os.path.join(parent, "repo")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, text=True, capture_output=True, check=True).stdout.split()
    for name in files:
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.join(folder, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(folder, name))
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as handle:
        config = handle.read()
    config = re.sub(r"only_mutate = \[.*?\]", f"only_mutate = {json.dumps([module])}", config, flags=re.S)
    config += f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    with open(os.path.join(folder, "pyproject.toml"), "w", encoding="utf-8") as handle:
        handle.write(config)
    shared = os.path.abspath(os.path.join(ROOT, "..", "shared"))
    if os.path.isdir(shared):  # the tests that read ../shared/data find it
        os.symlink(shared, os.path.join(parent, "shared"))
    return folder


def mutmut(folder: str, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=folder, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(done.stdout[-4000:])
        raise SystemExit(f"mutmut {' '.join(args)} exited with {done.returncode} in {folder}")
    return done.stdout


def score(module: str, tests: list[str], show: bool = False, keep: bool = False) -> dict:
    folder = scratch_copy(module, tests)
    start = time.time()
    try:
        mutmut(folder, "run")
        results = mutmut(folder, "results", "--all", "true")
        if show:  # each survivor's diff
            for line in results.splitlines():
                if line.endswith(": survived"):
                    print(mutmut(folder, "show", line.split(":")[0].strip()))
    finally:
        if keep:  # to read a survivor again (`mutmut show NAME`) or rerun some (`mutmut run NAME...`) there
            print(f"scratch copy kept: {folder}", flush=True)
        else:
            shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    counts, survived = collections.Counter(), []
    for line in results.splitlines():
        match = KEY.match(line)
        if match:
            counts[match["status"]] += 1
            if match["status"] == "survived":
                survived.append(match["key"])
    total = sum(counts.values())
    return {"mutants": total, **counts, "score": counts["killed"] / total if total else 0.0, "survivors": survived,
            "tests": tests, "seconds": round(time.time() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(MODULE_TESTS), help="source files (default: all above)")
    parser.add_argument("--tests", nargs="*", default=None, help="test files instead of the module's own list")
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor")
    parser.add_argument("--keep", action="store_true", help="keep each module's scratch copy (its path is printed)")
    args = parser.parse_args()
    results_path = os.path.join(ROOT, "bench", "results", "mutation.json")
    out = {}
    if os.path.exists(results_path):  # a run of some modules keeps the others' last rows
        with open(results_path, encoding="utf-8") as handle:
            out = json.load(handle)
    print(f"{'module':34} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'score':>7}")
    for module in args.modules:
        result = out[module] = score(module, args.tests or MODULE_TESTS.get(module, ["tests"]), args.show, args.keep)
        other = result["mutants"] - result.get("killed", 0) - result.get("survived", 0) - result.get("no tests", 0)
        print(f"{module:34} {result['mutants']:8} {result.get('killed', 0):7} {result.get('survived', 0):9} "
              f"{result.get('no tests', 0):9} {other:6} {100 * result['score']:6.1f}%", flush=True)
    for module in args.modules:
        for key in out[module]["survivors"]:
            print(f"survived: {key}")
    os.makedirs(os.path.dirname(results_path), exist_ok=True)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
