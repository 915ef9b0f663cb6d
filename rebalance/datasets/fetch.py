"""Download commands (they need the network; nothing else in the suite does):

  python -m rebalance.datasets.fetch data [--out Data] [--only Math_Math500 ...]   the benchmarks + the seen set
  python -m rebalance.datasets.fetch vectors [--out .]                             the authors' released vectors
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from ..errors import UsageError, cli_entry, first_line
from ..files.atomic import atomic_write_text
from .sources import SOURCES, Source, sort_parquet_files

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


def snapshot(what: str, **kwargs) -> str:
    """`huggingface_hub.snapshot_download`, with a sentence instead of a traceback when the hub is
    unreachable, the repository is gated, or a file is missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    repo = kwargs["repo_id"]
    page = f"https://huggingface.co/{'datasets/' if kwargs.get('repo_type') == 'dataset' else ''}{repo}"
    try:
        return snapshot_download(**kwargs)
    except GatedRepoError:
        raise UsageError(f"{what}: {repo} is gated. Accept its terms on {page}, "
                         "then set HF_TOKEN (or run `huggingface-cli login`) and fetch again") from None
    except LocalEntryNotFoundError:
        raise UsageError(f"{what}: cannot reach the Hugging Face hub for {repo} (no network, or set "
                         "HF_ENDPOINT for a mirror) and nothing is cached") from None
    except (HfHubHTTPError, OSError) as err:
        raise UsageError(f"{what}: downloading {repo} failed: {first_line(err)}") from None


def parquet_patterns(source: Source, config: str) -> list[str]:
    """Where the hub's parquet conversion keeps a config's split (current and older layouts)."""
    return [f"{config}/{source.split}/*.parquet", f"{config}/*-{source.split}.parquet"]


def download_source(source: Source, cache_dir: str | None = None) -> list[dict]:
    """Source rows of every config, in config then shard order, from the parquet conversion."""
    root = snapshot(source.name, repo_id=source.repo_id, repo_type="dataset", revision="refs/convert/parquet",
                    allow_patterns=[p for c in source.configs for p in parquet_patterns(source, c)],
                    cache_dir=cache_dir)
    rows: list[dict] = []
    for config in source.configs:
        files = [p for pattern in parquet_patterns(source, config) for p in glob.glob(os.path.join(root, pattern))]
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
            print(f"skipped {err}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"{name}: {len(records)} records -> {write_records(records, out_dir, name)}")
    if failed:
        raise UsageError(f"not fetched: {', '.join(failed)} (see above)")


def fetch_vectors(out_dir: str) -> None:
    """`vectors/{model}/steer_vector_layer{L}_conf_mixed.pt`, as the authors released them."""
    snapshot("vectors", repo_id=VECTORS_REPO, allow_patterns="vectors/*", local_dir=out_dir)
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
