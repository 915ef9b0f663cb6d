import json

import pytest

from rebalance.errors import UsageError
from rebalance.files.names import shard_path
from rebalance.files.shards import ShardWriter, merge_records, merge_shards, read_records


def write(path, text):
    path.write_text(text)
    return str(path)


def test_torn_last_line_is_ignored_then_cut_on_resume(tmp_path):
    path = write(tmp_path / "s.shard0.jsonl", '{"idx": 0}\n{"idx": 1}\n{"idx": 2, "quest')
    assert [r["idx"] for r in read_records(path)] == [0, 1]
    writer = ShardWriter(path)
    assert writer.done == {0, 1}
    writer.append({"idx": 2, "question": "q"})
    assert [json.loads(line)["idx"] for line in open(path)] == [0, 1, 2]


def test_malformed_complete_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "s.shard0.jsonl", '{"idx": 0}\nnot json\n{"idx": 2}\n')
    with pytest.raises(UsageError, match=r"s.shard0.jsonl:2: malformed JSON"):
        read_records(path)


def test_merge_keeps_first_per_idx_sorted_and_falls_back_to_question():
    merged, dropped = merge_records([
        [{"idx": 3, "v": "a"}, {"idx": 1, "v": "a"}],
        [{"idx": 3, "v": "b"}, {"question": "q", "v": "a"}, {"question": "q", "v": "b"}, {"idx": 0}],
    ])
    assert [(r.get("idx"), r["v"] if "v" in r else None) for r in merged] == [(0, None), (1, "a"), (3, "a"), (None, "a")]
    assert dropped == 2


def test_merge_shards_reports_missing(tmp_path):
    for rank, idxs in enumerate([[0, 2, 4], [1, 5]]):
        write(tmp_path / f"run.shard{rank}.jsonl", "".join(json.dumps({"idx": i}) + "\n" for i in idxs))
    write(tmp_path / "run.shard1x.jsonl", '{"idx": 9}\n')  # not a shard name
    summary = merge_shards(str(tmp_path), "run", expected=7)
    assert summary["records"] == 5 and summary["missing"] == [3, 6]
    assert [r["idx"] for r in read_records(str(tmp_path / "run.merged.jsonl"))] == [0, 1, 2, 4, 5]
    with pytest.raises(UsageError, match="no other.shard"):
        merge_shards(str(tmp_path), "other")


def test_shard_path_layout(tmp_path):
    assert shard_path("d", "origin_temp0.0_maxlen8", 3) == "d/origin_temp0.0_maxlen8.shard3.jsonl"
