"""Mutation score of the modules where a wrong line changes results (pyproject.toml, [tool.mutmut]):
runs mutmut, then prints per module how many mutants the tests killed and lists the survivors.

    make mutation                                  # every configured module (slow: hours on 2 cores)
    make mutation MUTANTS="rebalance.control*"     # one module
    make mutation TESTS="tests/test_control.py"    # only these tests (as the mutants' candidates)

A survivor is a line the tests would not notice changing; each needs a test, or a reason why no
output can change (then `# pragma: no mutate` on it). Results: bench/results/mutation.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = re.compile(r"^\s*(?P<key>(?P<module>[\w.]+?)\.x[_ǁ]\S*): (?P<status>.+)$")


def mutmut(*args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(done.stdout[-4000:])
        raise SystemExit(f"mutmut {' '.join(args)} exited with {done.returncode}")
    return done.stdout


def scores(results: str) -> dict[str, dict]:
    per: dict[str, dict] = collections.defaultdict(lambda: {"statuses": collections.Counter(), "survived": []})
    for line in results.splitlines():
        match = KEY.match(line)
        if match:
            entry = per[match["module"]]
            entry["statuses"][match["status"]] += 1
            if match["status"] == "survived":
                entry["survived"].append(match["key"])
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mutants", nargs="*", help="mutant name globs, e.g. 'rebalance.control*' (default: all)")
    parser.add_argument("--tests", nargs="*", default=None, help="test files the mutants are run against")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if args.tests:
        env["PYTEST_ADDOPTS"] = " ".join(args.tests)
    mutmut("run", *args.mutants, env=env)
    per = scores(mutmut("results", "--all", "true"))
    print(f"{'module':36} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'score':>7}")
    out = {}
    for module in sorted(per):
        counts = per[module]["statuses"]
        total = sum(counts.values())
        killed, survived, untested = counts["killed"], counts["survived"], counts["no tests"]
        other = total - killed - survived - untested
        print(f"{module:36} {total:8} {killed:7} {survived:9} {untested:9} {other:6} {100 * killed / total:6.1f}%")
        out[module] = {"mutants": total, **counts, "score": killed / total, "survived": per[module]["survived"]}
    for module in sorted(per):
        for key in per[module]["survived"]:
            print(f"survived: {key}")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "mutation.json"), "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
