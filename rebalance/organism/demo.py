"""The demo (`make demo`, `scripts/demo.sh`): ReBalance end to end on a CPU, offline, on the organism.

Seen and held-out problems -> collection -> layer -> vector + calibration -> on the held-out set
(greedy, so the difference is the steering) the baseline, dynamic ReBalance and a sweep of static
coefficients, each merged and graded -> ReBalance against the baseline -> dynamic against static
(table and plot) -> the report. Every stage goes through `pipeline.py`, so a second run skips what
is complete. `--model embedded` runs the same on plain SmolLM2, any other model name on that model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..decoding.steering import Mode
from ..files.names import RunName, lengths_png_path, ridge_paths, vector_file_name
from ..pipeline import Commands, Pipeline
from .recipe import HELDOUT_SET, SEEN_SET


@dataclass(frozen=True)
class DemoConfig:
    model: str = "organism"
    out: str = "demo_out"
    data: str = "Data"
    seen: int = 80
    heldout: int = 48
    maxlen: int = 192
    workers: int = 1        # one CPU worker with a wide batch decodes faster than two narrow ones
    batch_size: int = 48
    sweep: tuple[float, ...] = (-0.25, -0.5, -0.75)  # static coefficients, in units of the vector
    criterion: str = "steer"  # R^2 is flat over the organism's layers


def run_demo(config: DemoConfig = DemoConfig()) -> None:
    run = Commands()
    pipeline = Pipeline(config.model, config.data, os.path.join(config.out, "runs"), config.maxlen,
                        config.batch_size, config.workers, run=run, say=lambda line: print(line, flush=True))
    if config.model == "organism":
        print("== the organism (trained once, then reused from the model cache)", flush=True)
        run(["-m", "rebalance.organism", "train"])
    print(f"== data: {config.seen} seen and {config.heldout} held-out arithmetic problems (fixed seeds) under "
          f"{config.data}/", flush=True)
    run(["-m", "rebalance.organism", "data", "--out", config.data, "--seen", str(config.seen),
         "--heldout", str(config.heldout)])

    collected = pipeline.collect(SEEN_SET, set(range(config.seen)))
    layer = pipeline.select_layer(collected, config.criterion)
    print(f"best layer: {layer}", flush=True)
    vector = pipeline.extract(collected, layer,
                              os.path.join(config.out, "vectors", pipeline.name, vector_file_name(layer)))

    held = set(range(config.heldout))
    runs = [("baseline", RunName(Mode.OFF, 0.0, config.maxlen), ["--steer_mode", "off"]),
            ("ReBalance", RunName(Mode.DYNAMIC, 0.0, config.maxlen),
             ["--steer_mode", "dynamic", "--steer_vector_path", vector])]
    runs += [(f"static {coef:g}", RunName(Mode.STATIC, 0.0, config.maxlen, coef),
              ["--steer_mode", "static", "--steer_coef", format(coef, "g"), "--steer_vector_path", vector])
             for coef in config.sweep]
    merged = {}
    for label, name, flags in runs:
        merged[label] = pipeline.steered(HELDOUT_SET, held, name, ["--temperature", "0", *flags], label)
        pipeline.grade(merged[label], HELDOUT_SET, label, quiet=True)  # ReBalance against the baseline below
    pipeline.grade(merged["ReBalance"], HELDOUT_SET, "ReBalance", baseline=merged["baseline"])

    held_dir = pipeline.folder(HELDOUT_SET)
    print("== dynamic against static: accuracy, tokens, re-checks", flush=True)
    run(["-m", "rebalance.organism", "compare", held_dir, "--maxlen", str(config.maxlen)])
    pipeline.report()

    print("== plots")
    print(f"R^2 by layer:         {ridge_paths(collected)[1]}")
    print(f"control surface:      {os.path.join(held_dir, 'control_surface.png')}")
    print(f"length distributions: {lengths_png_path(merged['ReBalance'])}")
    print(f"dynamic vs static:    {os.path.join(held_dir, 'sweep.png')}")
    print(f"report:               {os.path.join(pipeline.model_dir, 'report.png')}")
