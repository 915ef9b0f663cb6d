"""The pipeline as the suite's own commands, in order: the one orchestrator under `make reproduce`
(`reproduce.py`), the demo and the organism study (`organism/`).

Each stage is a call of a top-level script, as a user would type it, printed before it runs (or
written to a log). A stage whose output is complete is skipped: a merged file holding every
expected idx with no shard newer than it; a layer pick, a vector with its calibration or a metrics
file newer than the merged file it came from. An interrupted stage resumes from its shards, so
running the same orchestration again after any interruption continues where it stopped.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import UsageError
from .files.atomic import atomic_write_text
from .files.names import RunName, calibration_path, layer_path, merged_path, metrics_path, shard_files
from .files.shards import read_records
from .models import model_basename
from .version import REPO_ROOT

Runner = Callable[..., str]  # (argv, quiet=False) -> the last line the command printed on stdout


@dataclass(frozen=True)
class Commands:
    """Runs a script of the suite (or `-m module`) and returns the last line it printed on stdout.

    Without a log: the command is printed, then runs with the caller's terminal (its progress bars
    show), from the caller's folder so relative paths in the flags mean what they meant; `quiet`
    keeps its stdout back (the layer search's table, a grading table the caller prints later).
    With a log: everything it prints goes to the log, and a failure names the log."""

    log: str | None = None

    def __call__(self, argv: Sequence[str], quiet: bool = False) -> str:
        argv = list(argv)
        target = argv if argv[0] == "-m" else [os.path.join(REPO_ROOT, argv[0]), *argv[1:]]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
        shown = " ".join(shlex.quote(a) for a in argv)
        if self.log is None:
            print(f"$ python {shown}", flush=True)
        capture = self.log is not None or quiet
        done = subprocess.run([sys.executable, *target], env=env, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if self.log is not None else None)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(f"\n$ python {shown}\n{done.stdout}")
        if done.returncode != 0:
            if self.log is not None:
                raise UsageError(f"`{shown}` failed (exit {done.returncode}); its output is in {self.log}")
            raise SystemExit(done.returncode)
        lines = (done.stdout or "").strip().splitlines()
        return lines[-1] if lines else ""


def run_is_complete(folder: str, base: str, expected: set[int]) -> bool:
    """The merged file holds every expected idx and no shard was written after it."""
    merged = merged_path(folder, base)
    if not os.path.isfile(merged):
        return False
    if any(os.path.getmtime(s) > os.path.getmtime(merged) for s in shard_files(folder, base)):
        return False
    return expected <= {record["idx"] for record in read_records(merged)}


def is_newer(path: str, than: str) -> bool:
    return os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(than)


@dataclass(frozen=True)
class Pipeline:
    """One model's stages, run by `run` (a `Commands`, or a stand-in in tests). Runs go to
    `{output_path}/{model folder name}/{dataset}/`, as the scripts name them."""

    model: str
    dataset_dir: str
    output_path: str
    max_new_tokens: int
    batch_size: int
    num_gpus: int = 1
    extra: tuple[str, ...] = ()          # more flags for every decoding run (--limit, --dtype, ...)
    run: Runner = field(default_factory=Commands)
    say: Callable[[str], None] = print   # a stage's one-line announcement

    @property
    def name(self) -> str:
        return model_basename(self.model)

    @property
    def model_dir(self) -> str:
        return os.path.join(self.output_path, self.name)

    def folder(self, dataset: str) -> str:
        return os.path.join(self.model_dir, dataset)

    def _decoding_flags(self, dataset: str) -> list[str]:
        return ["--model_name_or_path", self.model, "--dataset_dir", self.dataset_dir, "--dataset", dataset,
                "--output_path", self.output_path, "--max_generated_tokens", str(self.max_new_tokens),
                "--batch_size", str(self.batch_size), "--num_gpus", str(self.num_gpus), *self.extra]

    def _decode(self, script: str, dataset: str, base: str, flags: Sequence[str], expected: set[int],
                label: str) -> str:
        folder = self.folder(dataset)
        merged = merged_path(folder, base)
        if run_is_complete(folder, base, expected):
            self.say(f"skip {dataset} {label} run: {merged} holds all {len(expected)} examples")
            return merged
        self.say(f"== {dataset}: {label} run")
        self.run([script, *self._decoding_flags(dataset), *flags])
        self.run(["merge_shards.py", "--dir", folder, "--base", base, "--expected", str(len(expected))])
        return merged

    def collect(self, dataset: str, expected: set[int]) -> str:
        """Stage 1 and its merge; the merged file's path."""
        base = RunName("collection", 0.7, self.max_new_tokens).stem
        return self._decode("transformer_inference_dp.py", dataset, base, [], expected, "collection")

    def select_layer(self, merged: str, criterion: str) -> int:
        """Stage 2; the pick is kept beside the collection (`<stem>.layer.txt`)."""
        kept = layer_path(merged)
        if not is_newer(kept, merged):
            self.say(f"== layer selection (--criterion {criterion})")
            layer = self.run(["hidden_config_ridge.py", "--jsonl_path", merged, "--hidden_dir",
                              os.path.dirname(merged), "--criterion", criterion, "--model_name_or_path", self.model],
                             quiet=True)
            if not layer.isdigit():
                raise UsageError(f"the layer search printed {layer!r} where a layer id was expected")
            atomic_write_text(f"{layer}\n", kept)
        with open(kept, encoding="utf-8") as handle:
            return int(handle.read())

    def extract(self, merged: str, layer: int, save_path: str) -> str:
        """Stage 3: the vector at `save_path` and its calibration beside it (written second)."""
        if not (is_newer(save_path, merged) and is_newer(calibration_path(save_path), merged)):
            self.say("== steering vector and calibration")
            self.run(["hidden_analysis_auto.py", "--layer_id", str(layer), "--jsonl_path", merged, "--hidden_dir",
                      os.path.dirname(merged), "--save_path", save_path])
        return save_path

    def steered(self, dataset: str, expected: set[int], name: RunName, flags: Sequence[str], label: str,
                script: str = "transformer_inference_steer_dp.py") -> str:
        """Stage 4 and its merge; `flags` say the mode, the vector and the sampling."""
        return self._decode(script, dataset, name.stem, flags, expected, label)

    def grade(self, merged: str, dataset: str, label: str, flags: Sequence[str] = (), baseline: str | None = None,
              quiet: bool = False) -> None:
        """Stage 5, unless the metrics are newer than the merged file (always with a baseline)."""
        if baseline is None and is_newer(metrics_path(merged), merged):
            self.say(f"skip {dataset} {label} grading: {metrics_path(merged)} is up to date")
            return
        self.say(f"== {dataset}: grading the {label} run")
        self.run(["check.py", "--model_name_or_path", self.model, "--data_name", dataset, "--data_dir",
                  self.dataset_dir, "--generation_path", merged, *flags, *(["--baseline", baseline] if baseline else [])],
                 quiet=quiet)

    def report(self) -> None:
        self.say(f"== report: {self.model_dir}")
        self.run(["-m", "rebalance.reports.report", self.model_dir])
