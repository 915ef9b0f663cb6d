#!/usr/bin/env python
"""Part 1 of the GPU check: the engine on a device against the CPU fp32 reference, on the tests' tiny
Qwen2, Qwen3 and Llama models. Dynamic steering and collection, each eager and compiled, in fp32 and
in bf16 on the device; compared with the reference run on the CPU in fp32:
  fp32   the same tokens; coefficients and captured rows within the fp32 tolerances of tests/conftest.py
  bf16   coefficients and rows within the bf16 tolerances over the tokens both runs share (greedy ids
         may part where two logits are within bf16 rounding: where they part is reported, not failed)
Writes correctness.json to --out and exits 1 when a check fails.

  python bench/gpu_correct.py --device cuda --out results
  python bench/gpu_correct.py --device cpu --out results      # the rehearsal (bf16 on the CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from conftest import PROBLEMS, TOLERANCES  # noqa: E402
from tiny import save_tiny  # noqa: E402

from rebalance.calibration import generic  # noqa: E402
from rebalance.control import ControlFunction  # noqa: E402
from rebalance.decoding.decode import engine_for  # noqa: E402
from rebalance.decoding.records import make_table  # noqa: E402
from rebalance.decoding.steering import Mode, SteeringSetup, site_index  # noqa: E402
from rebalance.examples import Example  # noqa: E402
from rebalance.models import load_model  # noqa: E402

NEW_TOKENS = 24


def decode(folder: str, device: str, dtype: str, kind: str, compiled: str | None) -> dict:
    """{idx: (tokens, coefficients, captured rows in fp32 on the CPU)} of the tests' five problems;
    `compiled` names the compile backend (None: eager)."""
    model, tokenizer = load_model(folder, device, dtype)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    setup = SteeringSetup(vector, site_index(model.config.num_hidden_layers + 1, 1, "input"), Mode.DYNAMIC, -1.0,
                          ControlFunction(**generic()))
    engine = engine_for(model, tokenizer, make_table(model, tokenizer), width=4, max_new_tokens=NEW_TOKENS,
                        steering=setup if kind == "steered" else None, capture_on="cpu" if kind == "collect" else None)
    if compiled:
        engine.compile(compiled)
    with engine:
        return {d.example.idx: (d.tokens, d.values.get("steer_coefs", []),
                                [row.float().cpu() for row in d.values.get("hidden_rows", [])])
                for d in engine.run(Example(i, p, "", {}) for i, p in enumerate(PROBLEMS))}


def compare(got: dict, want: dict, dtype: str) -> dict:
    """Where the tokens part (per example), and the worst coefficient and row error over the examples
    whose tokens agree (past a differing token the two runs decode different texts)."""
    tol = TOLERANCES[dtype]
    parted, coef_err, row_err, compared = {}, 0.0, 0.0, 0
    for idx, (tokens, coefs, rows) in want.items():
        other_tokens, other_coefs, other_rows = got[idx]
        if tokens != other_tokens:
            parted[idx] = next((i for i, (a, b) in enumerate(zip(tokens, other_tokens)) if a != b),
                               min(len(tokens), len(other_tokens)))
            continue
        compared += 1
        coef_err = max([coef_err] + [abs(a - b) for a, b in zip(coefs, other_coefs)])
        row_err = max([row_err] + [float((a - b).norm() / a.norm().clamp(min=1e-12)) for a, b in zip(rows, other_rows)])
    ok = compared > 0 and coef_err <= tol.coef and row_err <= tol.row and not (parted and tol.same_ids)
    return {"parted_at": parted, "compared": compared, "coef_error": coef_err, "row_error": row_err,
            "coef_tol": tol.coef, "row_tol": tol.row, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--archs", default="qwen2,qwen3,llama")
    parser.add_argument("--compile_backend", default="inductor",
                        help="torch.compile backend of the compiled checks (the rehearsal traces only: aot_eager)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results, failed = [], False
    with tempfile.TemporaryDirectory() as root:
        for arch in args.archs.split(","):
            folder = save_tiny(os.path.join(root, arch), arch)
            for kind in ("steered", "collect"):
                reference = decode(folder, "cpu", "float32", kind, compiled=None)
                for dtype in ("float32", "bfloat16"):
                    for compiled in (False, True):
                        got = decode(folder, args.device, dtype, kind, args.compile_backend if compiled else None)
                        row = {"arch": arch, "kind": kind, "device": args.device, "dtype": dtype,
                               "compiled": compiled, **compare(got, reference, dtype)}
                        failed |= not row["ok"]
                        results.append(row)
                        print(json.dumps(row), flush=True)
                        with open(os.path.join(args.out, "correctness.json"), "w") as handle:
                            json.dump(results, handle, indent=2)  # rewritten after every check: a cut-off keeps them
    print(f"{sum(r['ok'] for r in results)} of {len(results)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
