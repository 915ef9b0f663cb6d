"""Every file name the suite writes or looks for, in one place: a run's stem (format and parse),
its shards, their run cards and locks, the merged file, check.py's outputs, the hidden-state files
and the calibration file beside a vector.

Writers and readers both call these, so a name cannot drift between the stage that writes a file
and the stage that reads it. `python -m rebalance.files.names stem ...` prints a stem for shell
scripts.

Stems: a collection run is `origin_temp{T}_maxlen{N}` and a dynamic ReBalance run
`steer_temp{T}_maxlen{N}` (the release's names); an unsteered baseline is `baseline_temp...`, a
static run `static{coef}_temp...`; a `--run_id` goes in front, `{run_id}_...`. So runs of
different modes never share a stem, and neither do static runs of different coefficients.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from dataclasses import dataclass

HIDDEN_PATTERN = "hidden_{idx}.pt"   # the release's name, beside the shards of a collection run

MODE_OF_KIND = {"origin": "collection", "steer": "dynamic", "baseline": "off", "static": "static"}
KIND_OF_MODE = {mode: kind for kind, mode in MODE_OF_KIND.items()}

_STEM = re.compile(r"^(?:(?P<run_id>.+?)_)??(?P<kind>origin|steer|baseline|static(?P<coef>[-+0-9.e]+))"
                   r"_temp(?P<temp>[-+0-9.e]+|nan|inf)_maxlen(?P<maxlen>\d+)$")
_SHARD_RANK = re.compile(r"\.shard(\d+)\.(?:jsonl|run\.json)$")


@dataclass(frozen=True)
class RunName:
    """What a stem says about its run."""

    mode: str                  # collection | dynamic | static | off
    temperature: float
    max_new_tokens: int
    coef: float | None = None  # static runs only
    run_id: str = ""

    @property
    def stem(self) -> str:
        kind = KIND_OF_MODE[self.mode]
        if self.mode == "static":
            kind += format(self.coef, "g")
        prefix = f"{self.run_id}_" if self.run_id else ""
        return f"{prefix}{kind}_temp{self.temperature}_maxlen{self.max_new_tokens}"

    @property
    def suffix(self) -> str:
        """`temp{T}_maxlen{N}`: what runs meant to be compared with each other share."""
        return f"temp{self.temperature}_maxlen{self.max_new_tokens}"


def collection_stem(temperature: float, max_new_tokens: int) -> str:
    """The release's name of a collection run (temperature only names it: decoding is greedy)."""
    return RunName("collection", temperature, max_new_tokens).stem


def steered_stem(temperature: float, max_new_tokens: int, mode: str, coef: float | None = None,
                 run_id: str = "") -> str:
    return RunName(mode, temperature, max_new_tokens, coef if mode == "static" else None, run_id).stem


def parse_stem(stem: str) -> RunName | None:
    """The run a stem names, or None when it is not a run of this suite."""
    match = _STEM.match(stem)
    if not match:
        return None
    kind = "static" if match["coef"] is not None else match["kind"]
    try:
        coef = float(match["coef"]) if match["coef"] is not None else None
        return RunName(MODE_OF_KIND[kind], float(match["temp"]), int(match["maxlen"]), coef, match["run_id"] or "")
    except ValueError:
        return None


def stem_of(path: str) -> str:
    """The run stem of any file the suite writes for a run (shard, card, merged, graded, metrics)."""
    name = os.path.basename(path)
    for ending in (".run.json", ".jsonl", ".metrics.json", ".lengths.png", ".ridge_r2.csv", ".ridge_r2.png"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    while (shorter := re.sub(r"\.(shard\d+|merged|graded)$", "", name)) != name:
        name = shorter
    return name


# ---- a run's files ---------------------------------------------------------------------------

def shard_path(directory: str, stem: str, rank: int) -> str:
    return os.path.join(directory, f"{stem}.shard{rank}.jsonl")


def shard_rank(path: str) -> int | None:
    """The rank a shard (or shard card) file name carries, or None when it is neither."""
    match = _SHARD_RANK.search(path)
    return int(match.group(1)) if match else None


def _by_rank(directory: str, stem: str, ending: str) -> list[str]:
    """`{stem}.shard{rank}{ending}` files in rank order (folder and stem may hold glob characters)."""
    found = [p for p in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(stem)}.shard*{ending}"))
             if shard_rank(p) is not None]
    return sorted(found, key=shard_rank)


def shard_files(directory: str, stem: str) -> list[str]:
    """The shards of one run, in rank order."""
    return _by_rank(directory, stem, ".jsonl")


def card_path(jsonl_path: str) -> str:
    """The run card beside a shard or a merged file: `X.jsonl` -> `X.run.json`."""
    stem = jsonl_path[: -len(".jsonl")] if jsonl_path.endswith(".jsonl") else jsonl_path
    return f"{stem}.run.json"


def card_files(directory: str, stem: str) -> list[str]:
    """The run cards of every shard of one run, in rank order."""
    return _by_rank(directory, stem, ".run.json")


def lock_path(shard: str) -> str:
    return f"{shard}.lock"


def merged_path(directory: str, stem: str) -> str:
    return os.path.join(directory, f"{stem}.merged.jsonl")


def output_stem(generation_path: str) -> str:
    """What check.py's outputs are named after: the generation file without `.jsonl`."""
    return generation_path[: -len(".jsonl")] if generation_path.endswith(".jsonl") else generation_path


def graded_path(generation_path: str) -> str:
    return f"{output_stem(generation_path)}.graded.jsonl"


METRICS_SUFFIX = ".metrics.json"


def metrics_path(generation_path: str) -> str:
    return f"{output_stem(generation_path)}{METRICS_SUFFIX}"


def lengths_png_path(generation_path: str) -> str:
    return f"{output_stem(generation_path)}.lengths.png"


def merged_of_metrics(path: str) -> str:
    """The generation file a `*.metrics.json` was computed from."""
    return path[: -len(METRICS_SUFFIX)] + ".jsonl"


def metrics_files(directory: str, suffix: str = "") -> list[str]:
    """The graded merged runs of a folder (`*{suffix}.merged.metrics.json`), sorted."""
    pattern = os.path.join(glob.escape(directory), f"*{glob.escape(suffix)}.merged{METRICS_SUFFIX}")
    return sorted(glob.glob(pattern))


def graded_runs_below(folder: str, depth: int) -> list[str]:
    """Every check.py metrics file `depth` folders below `folder` (1: a model folder's benchmarks)."""
    pattern = os.path.join(glob.escape(folder), *(["*"] * depth), f"*{METRICS_SUFFIX}")
    return sorted(glob.glob(pattern))


def ridge_paths(jsonl_path: str) -> tuple[str, str]:
    """The layer scores written beside the collection records: CSV and PNG."""
    stem = os.path.splitext(jsonl_path)[0]
    return f"{stem}.ridge_r2.csv", f"{stem}.ridge_r2.png"


# ---- hidden states and vectors ---------------------------------------------------------------

def layer_path(jsonl_path: str) -> str:
    """The layer the pipeline picked from a collection run, beside it."""
    return output_stem(jsonl_path) + ".layer.txt"


def hidden_path(folder: str, idx: int, pattern: str = HIDDEN_PATTERN) -> str:
    return os.path.join(folder, pattern.format(idx=idx))


def hidden_files(folder: str, pattern: str = HIDDEN_PATTERN) -> list[str]:
    """The hidden-state files of a folder named by `pattern`, by idx."""
    head, tail = pattern.split("{idx}")
    idx = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    found = glob.glob(os.path.join(glob.escape(folder), glob.escape(head) + "*" + glob.escape(tail)))
    return sorted((p for p in found if idx.fullmatch(os.path.basename(p))),
                  key=lambda p: int(idx.fullmatch(os.path.basename(p)).group(1)))


def calibration_path(vector_path: str) -> str:
    """The calibration file written beside a vector by hidden_analysis_auto.py: `<stem>.json`."""
    return os.path.splitext(vector_path)[0] + ".json"


def vector_file_name(layer: int | str, labels: str = "conf_mixed") -> str:
    """The released vectors' name, which the demo and reproduce use too."""
    return f"steer_vector_layer{layer}_{labels}.pt"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rebalance.files.names",
                                     description="print the stem of a run, as the scripts name it")
    parser.add_argument("mode", choices=("collection", "dynamic", "static", "off"))
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--maxlen", type=int, required=True)
    parser.add_argument("--coef", type=float, default=None)
    parser.add_argument("--run_id", default="")
    args = parser.parse_args(argv)
    if args.mode == "static" and args.coef is None:
        parser.error("--coef is needed for a static run")
    print(RunName(args.mode, args.temperature, args.maxlen, args.coef if args.mode == "static" else None,
                  args.run_id).stem)


if __name__ == "__main__":
    main()
