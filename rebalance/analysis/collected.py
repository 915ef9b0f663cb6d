"""Reading a collection run for the offline analysis (docs/method.md §4-§5): records, hidden files, pairing.

A collection run is a JSONL of records plus `hidden_{idx}.pt` files holding
`{layer: {0: {"step": Tensor[V, D]}}}` (this project's files and the authors' release share the
layout). Row j of a record pairs with `sentence_confidences[j + offset]`. Records are matched to
hidden files by `idx`; the release matched line i to `hidden_i.pt`, which shifts after any gap.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UsageError
from ..examples import read_jsonl
from ..files.cards import read_card_beside
from ..files.names import HIDDEN_PATTERN, hidden_path


@dataclass(frozen=True)
class CalibRecord:
    idx: int
    confidences: list[float]
    step_texts: list[str] | None
    response: str


@dataclass
class Pairing:
    """The records usable for rows (in file order) and why the others were skipped."""

    used: list[tuple[CalibRecord, int]]  # (record, number of rows V)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (idx, reason)

    @property
    def n_rows(self) -> int:
        return sum(rows for _, rows in self.used)


def read_calibration_records(jsonl_path: str) -> list[CalibRecord]:
    """Every record of a collection JSONL; each must carry an `idx` and `sentence_confidences`."""
    rows = read_jsonl(jsonl_path)
    if not rows:
        raise UsageError(f"--jsonl_path {jsonl_path}: no records")
    records = []
    for position, (line_no, obj) in enumerate(rows):
        where = f"{jsonl_path}:{line_no}"
        confidences = obj.get("sentence_confidences")
        if not isinstance(confidences, list):
            raise UsageError(f"{where}: record has no 'sentence_confidences' list "
                             "(is this the output of transformer_inference_dp.py?)")
        try:
            confidences = [float(c) for c in confidences]
        except (TypeError, ValueError):
            raise UsageError(f"{where}: 'sentence_confidences' must hold numbers") from None
        idx = obj.get("idx", position)
        if not isinstance(idx, int):
            raise UsageError(f"{where}: 'idx' must be a whole number, got {idx!r}")
        texts = obj.get("step_texts")
        if texts is not None and (not isinstance(texts, list) or len(texts) != len(confidences)):
            raise UsageError(f"{where}: 'step_texts' must be a list as long as 'sentence_confidences'")
        responses = obj.get("generated_responses") or [""]
        response = responses[0] if isinstance(responses, list) else str(responses)
        records.append(CalibRecord(idx, confidences, texts, response or ""))
    return records


DEFAULT_PATTERN = HIDDEN_PATTERN


@dataclass(frozen=True)
class HiddenFiles:
    """Where the hidden file of each idx is: a folder and a name pattern with `{idx}`; and the
    fingerprint of the run whose records they must belong to, when its card is known."""

    folder: str
    pattern: str = DEFAULT_PATTERN
    run: str | None = None

    def check_run(self, hidden: dict, path: str) -> None:
        """A file tagged by another run than the records' is an error (two collection runs share
        the names hidden_{idx}.pt, so one can overwrite the other's)."""
        tag = hidden.get("run")
        if self.run and isinstance(tag, dict) and tag.get("fingerprint") != self.run:
            raise UsageError(f"{path}: written by the collection run {tag.get('stem')} (card {tag.get('fingerprint')}), "
                             f"not by the run of --jsonl_path (card {self.run}): the folder holds another run's "
                             "hidden files; collect each run into its own --output_path")

    def path(self, idx: int) -> str:
        return hidden_path(self.folder, idx, self.pattern)

    @staticmethod
    def of(hidden: "HiddenFiles | str") -> "HiddenFiles":
        return hidden if isinstance(hidden, HiddenFiles) else HiddenFiles(hidden)


def check_pattern(pattern: str) -> str:
    """`--file_pattern` must name each file by its idx, e.g. `hidden_{idx}.pt`."""
    try:
        names = {pattern.format(idx=0), pattern.format(idx=1)}
    except (KeyError, IndexError, ValueError) as err:
        raise UsageError(f"--file_pattern {pattern!r}: only the field {{idx}} is allowed ({err})") from None
    if len(names) != 2 or os.sep in pattern:
        raise UsageError(f"--file_pattern {pattern!r} must be a file name containing {{idx}}, e.g. {DEFAULT_PATTERN}")
    return pattern


def locate_hidden(hidden_dir: str, idxs: Sequence[int], pattern: str = DEFAULT_PATTERN) -> tuple[HiddenFiles, str]:
    """The hidden files of a collection run: in `hidden_dir` (the release's layout: beside the
    shards), named by `pattern`. Returns them and the line that says where they are read from."""
    if not os.path.isdir(hidden_dir):
        raise UsageError(f"--hidden_dir: no such folder: {hidden_dir}")
    given = HiddenFiles(hidden_dir, check_pattern(pattern))
    return given, f"hidden files: {given.folder}/{pattern}"


def load_hidden(path: str) -> dict:
    """A hidden file, memory-mapped when it is in torch's zip format so unread layers cost nothing."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be mapped; try a plain read
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"{path}: not a readable hidden-state file ({type(err).__name__}: {err})") from None


def read_run_tag(path: str) -> dict | None:
    """The run that wrote a hidden file (`{"stem", "fingerprint"}`), None for untagged files."""
    hidden = load_hidden(path)
    tag = hidden.get("run") if isinstance(hidden, dict) else None
    return tag if isinstance(tag, dict) else None


def layer_rows(hidden: dict, layer: int, path: str) -> torch.Tensor:
    try:
        rows = hidden[layer][0]["step"]
    except (KeyError, TypeError, IndexError):
        raise UsageError(f"{path}: no entry [{layer}][0]['step'] "
                         "(expected {layer: {0: {'step': Tensor[V, D]}}})") from None
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2:
        raise UsageError(f"{path}: layer {layer} does not hold a [V, D] tensor")
    return rows


def layer_keys(hidden: Any, path: str) -> list[int]:
    keys = sorted(k for k in hidden if isinstance(k, int)) if isinstance(hidden, dict) else []
    if not keys:
        raise UsageError(f"{path}: not a dict of layers {{layer: {{0: {{'step': Tensor}}}}}}")
    return keys


def pair_records(records: Sequence[CalibRecord], hidden: HiddenFiles | str, max_files: int | None,
                 offset: int) -> Pairing:
    """The first `max_files` records whose hidden file exists and whose confidences leave rows to
    pair. The row count itself is checked while the files are read (`iter_hidden`), so each file
    is opened once."""
    files = HiddenFiles.of(hidden)
    if not os.path.isdir(files.folder):
        raise UsageError(f"--hidden_dir: no such folder: {files.folder}")
    pairing = Pairing(used=[])
    for rec in records[:max_files] if max_files is not None else records:
        path = files.path(rec.idx)
        if not os.path.isfile(path):
            pairing.skipped.append((rec.idx, f"no {os.path.basename(path)}"))
        elif len(rec.confidences) - offset <= 0:
            pairing.skipped.append((rec.idx, f"no rows to pair ({len(rec.confidences)} confidences, offset {offset})"))
        else:
            pairing.used.append((rec, len(rec.confidences) - offset))
    return pairing


def report_pairing(pairing: Pairing, verbose: bool) -> str:
    lines = [f"records used: {len(pairing.used)} ({pairing.n_rows} rows), skipped: {len(pairing.skipped)}"]
    if verbose:
        lines += [f"  skipped idx {idx}: {why}" for idx, why in pairing.skipped]
    elif pairing.skipped:
        lines.append("  (--verbose names the skipped records)")
    return "\n".join(lines)


def require_usable(pairing: Pairing) -> None:
    if not pairing.used:
        raise UsageError(f"zero usable examples: all {len(pairing.skipped)} records were skipped "
                         "(check --hidden_dir, --expected_offset and --max_files; --verbose says why)")


def available_layers(hidden: HiddenFiles | str, pairing: Pairing) -> list[int]:
    """Layer keys of the first candidate hidden file."""
    require_usable(pairing)
    path = HiddenFiles.of(hidden).path(pairing.used[0][0].idx)
    return layer_keys(load_hidden(path), path)


def iter_hidden(pairing: Pairing, hidden: HiddenFiles | str,
                layers: Sequence[int]) -> Iterator[tuple[CalibRecord, dict[int, torch.Tensor]]]:
    """Each usable record with its rows for `layers`, reading every hidden file once. A record
    whose row count does not match its confidences moves from `used` to `skipped`."""
    files = HiddenFiles.of(hidden)
    kept = []
    for rec, rows in tqdm(list(pairing.used), desc="reading hidden states", unit="file"):
        path = files.path(rec.idx)
        hidden = load_hidden(path)
        keys = layer_keys(hidden, path)
        files.check_run(hidden, path)
        found = layer_rows(hidden, keys[0], path).shape[0]
        if found != rows:
            why = "no rows" if found == 0 else f"{found} rows but {len(rec.confidences)} confidences"
            pairing.skipped.append((rec.idx, why))
            continue
        out = {}
        for layer in layers:
            tensor = layer_rows(hidden, layer, path)
            if tensor.shape[0] != rows:
                raise UsageError(f"{path}: layer {layer} has {tensor.shape[0]} rows, layer {keys[0]} has {rows}")
            out[layer] = tensor
        kept.append((rec, rows))
        yield rec, out
    pairing.used = kept


def _numpy_storage(dtype: torch.dtype) -> np.dtype:
    """How rows of this dtype are kept on disk: as they are (bf16 as its raw 16 bits)."""
    return {torch.float16: np.dtype(np.float16), torch.bfloat16: np.dtype(np.uint16),
            torch.float64: np.dtype(np.float64)}.get(dtype, np.dtype(np.float32))


class LayerStack:
    """All rows of many layers, gathered in one pass over the hidden files into one temporary file
    per layer (appended in the files' own dtype), so memory holds one layer at a time, not all."""

    def __init__(self, pairing: Pairing, hidden: HiddenFiles | str, layers: Sequence[int], tmp_dir: str | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="rebalance_rows_", dir=tmp_dir)
        self._files: dict[int, Any] = {}
        self._dtype: torch.dtype | None = None
        self.width: dict[int, int] = {}
        self.n_rows = 0
        try:
            for _, per_layer in iter_hidden(pairing, hidden, layers):
                for layer, rows in per_layer.items():
                    self._append(layer, rows)
                self.n_rows += next(iter(per_layer.values())).shape[0]
        finally:
            for handle in self._files.values():
                handle.close()

    def _path(self, layer: int) -> str:
        return os.path.join(self._tmp.name, f"layer{layer}.bin")

    def _append(self, layer: int, rows: torch.Tensor) -> None:
        if layer not in self._files:
            self._dtype = self._dtype or rows.dtype
            self._files[layer] = open(self._path(layer), "wb")
            self.width[layer] = rows.shape[1]
        rows = rows.to(self._dtype).contiguous()
        raw = rows.view(torch.uint16) if rows.dtype == torch.bfloat16 else rows
        self._files[layer].write(raw.numpy().tobytes())

    def float32(self, layer: int) -> np.ndarray:
        """One layer's rows (record order, then step order) as a float32 array in memory."""
        stored = np.fromfile(self._path(layer), dtype=_numpy_storage(self._dtype)).reshape(self.n_rows, self.width[layer])
        if self._dtype == torch.bfloat16:
            return torch.from_numpy(stored).view(torch.bfloat16).float().numpy()
        return stored.astype(np.float32, copy=False)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "LayerStack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def paired_confidences(pairing: Pairing, offset: int) -> np.ndarray:
    """y for the stacked rows: confidence j + offset of each used record, as float32."""
    values = [c for rec, rows in pairing.used for c in rec.confidences[offset:offset + rows]]
    return np.asarray(values, dtype=np.float32)


def model_name_from_path(jsonl_path: str) -> str:
    """Collection runs live in `{output_path}/{model}/{dataset}/`: the model is two folders up."""
    parts = os.path.normpath(os.path.abspath(jsonl_path)).split(os.sep)
    return parts[-3] if len(parts) >= 3 else "unknown"


def open_collection(jsonl_path: str, hidden_dir: str, max_files: int | None, offset: int,
                    pattern: str = DEFAULT_PATTERN) -> tuple[list[CalibRecord], HiddenFiles, Pairing]:
    """A collection run as both analysis stages read it: its records, where their hidden files are
    (said on stdout), and the pairing of records with rows."""
    if offset < 0:
        raise UsageError(f"--expected_offset must be 0 or more, got {offset}")
    records = read_calibration_records(jsonl_path)
    considered = records[:max_files] if max_files is not None else records
    files, where = locate_hidden(hidden_dir, [rec.idx for rec in considered], pattern)
    card = read_card_beside(jsonl_path)
    files = replace(files, run=card.fingerprint if card else None)
    print(where)
    return records, files, pair_records(records, files, max_files, offset)
