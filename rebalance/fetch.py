"""Download commands (they need the network; nothing else in the suite does):

  python -m rebalance.fetch data [--out Data] [--only Math_Math500 ...]   the benchmarks + the seen set
  python -m rebalance.fetch vectors [--out .]                             the authors' released vectors
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from .datasets import SOURCES, Source, sort_parquet_files
from .errors import UsageError, cli_entry
from .shards import atomic_write_text

VECTORS_REPO = "Yulin-Li/ReBalance"


def read_parquet_rows(paths: list[str]) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("reading the hub's parquet files needs pyarrow: pip install pyarrow") from None
    rows: list[dict] = []
    for path in sort_parquet_files(paths):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def download_source(source: Source, cache_dir: str | None = None) -> list[dict]:
    """Source rows of every config, in config then shard order, from the parquet conversion."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    patterns = [p for c in source.configs for p in (f"{c}/{source.split}/*.parquet", f"{c}/*-{source.split}.parquet")]
    try:
        root = snapshot_download(repo_id=source.repo_id, repo_type="dataset", revision="refs/convert/parquet",
                                 allow_patterns=patterns, cache_dir=cache_dir)
    except GatedRepoError:
        raise UsageError(f"{source.name}: {source.repo_id} is gated. Accept its terms on "
                         f"https://huggingface.co/datasets/{source.repo_id}, then set HF_TOKEN (or run "
                         "`huggingface-cli login`) and fetch again") from None
    except HfHubHTTPError as err:
        raise UsageError(f"{source.name}: downloading {source.repo_id} failed: {err}") from None
    rows: list[dict] = []
    for config in source.configs:
        files = [p for pattern in (f"{config}/{source.split}/*.parquet", f"{config}/*-{source.split}.parquet")
                 for p in glob.glob(os.path.join(root, pattern))]
        if not files:
            raise UsageError(f"{source.name}: no {config}/{source.split} parquet files in {source.repo_id}")
        rows.extend(read_parquet_rows(files))
    return rows


def write_records(records: list[dict], out_dir: str, name: str) -> str:
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "test.jsonl")
    atomic_write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records), path)
    return path


def fetch_data(out_dir: str, only: list[str] | None = None) -> None:
    names = only or list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise UsageError(f"--only: unknown dataset {unknown[0]!r}; known: {', '.join(SOURCES)}")
    failed = []
    for name in names:
        source = SOURCES[name]
        try:
            records = source.convert(download_source(source))
        except UsageError as err:
            print(f"skipped {name}: {err}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"{name}: {len(records)} records -> {write_records(records, out_dir, name)}")
    if failed:
        raise UsageError(f"not fetched: {', '.join(failed)} (see above)")


def fetch_vectors(out_dir: str) -> None:
    """`vectors/{model}/steer_vector_layer{L}_conf_mixed.pt`, as the authors released them."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=VECTORS_REPO, allow_patterns="vectors/*", local_dir=out_dir)
    found = sorted(glob.glob(os.path.join(out_dir, "vectors", "**", "*.pt"), recursive=True))
    for path in found:
        print(path)
    if not found:
        raise UsageError(f"no vectors/*.pt in {VECTORS_REPO}")


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    data = sub.add_parser("data", help="the nine benchmarks and Math_Train into OUT/{name}/test.jsonl")
    data.add_argument("--out", default="Data")
    data.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"some of: {', '.join(SOURCES)}")
    vectors = sub.add_parser("vectors", help=f"the released vectors of {VECTORS_REPO} into OUT/vectors/")
    vectors.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    if args.what == "data":
        fetch_data(args.out, args.only)
    else:
        fetch_vectors(args.out)


if __name__ == "__main__":
    sys.exit(main())
