import errno
import fcntl
import json
import os
import re
import stat

import pytest

from rebalance.errors import UsageError
from rebalance.files.cards import RunCard
from rebalance.files.names import card_path, lock_path, shard_path
from rebalance.files.shards import (
    ShardLock,
    ShardWriter,
    compare_cards,
    hold_run,
    hold_shards,
    live_writer,
    merge_records,
    merge_shards,
    read_records,
    write_shard_card,
)


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


# ---- reading and appending, byte by byte ----------------------------------------------------------

def test_reading_leaves_a_torn_line_on_disk_unless_asked_to_repair(tmp_path):
    text = '{"idx": 0}\n\n  \n{"idx": 1}\n{"idx": 2, "quest'
    path = write(tmp_path / "s.shard0.jsonl", text)
    assert read_records(path) == [{"idx": 0}, {"idx": 1}]  # blank lines are no records
    assert open(path).read() == text  # a reader (merge, another worker's writer) never cuts a live file
    assert read_records(path, repair=True) == [{"idx": 0}, {"idx": 1}]
    assert open(path).read() == '{"idx": 0}\n\n  \n{"idx": 1}\n'


@pytest.mark.parametrize("text, records", [
    ("", []),
    ('{"idx": 0}', []),  # one torn line and nothing else
    ('{"idx": 0}\n', [{"idx": 0}]),
    ('{"idx": 0}\n{"idx": 1}\n', [{"idx": 0}, {"idx": 1}]),
])
def test_only_lines_ended_by_a_newline_are_records(tmp_path, text, records):
    assert read_records(write(tmp_path / "s.shard0.jsonl", text)) == records


def test_a_missing_shard_has_no_records_and_invalid_utf8_is_named(tmp_path):
    assert read_records(str(tmp_path / "none.shard0.jsonl")) == []
    path = tmp_path / "s.shard0.jsonl"
    path.write_bytes(b'{"idx": 0}\n{"q": "\xff\xfe"}\n')
    with pytest.raises(UsageError, match=r"s.shard0.jsonl:2: malformed JSON record$"):
        read_records(str(path))


def test_a_writer_knows_every_idx_of_its_run_and_cuts_only_its_own_torn_line(tmp_path):
    own = write(tmp_path / "run.shard1.jsonl", '{"idx": 4}\n{"question": "no idx"}\n{"idx": 5, "q')
    other = write(tmp_path / "run.shard0.jsonl", '{"idx": 0}\n{"idx": 2}\n{"idx": 9, "q')
    write(tmp_path / "runx.shard0.jsonl", '{"idx": 7}\n')  # another run's shard
    write(tmp_path / "run.merged.jsonl", '{"idx": 8}\n')  # not a shard
    writer = ShardWriter(own)
    assert writer.done == {0, 2, 4}
    assert open(own).read() == '{"idx": 4}\n{"question": "no idx"}\n'
    assert open(other).read().endswith('{"idx": 9, "q')  # the other worker may still be writing that line


def test_append_writes_one_line_in_utf8_and_marks_it_done(tmp_path):
    path = str(tmp_path / "new" / "folder" / "run.shard0.jsonl")
    writer = ShardWriter(path)  # its folder is made
    assert writer.done == set()
    writer.append({"idx": 3, "response": "x² = 4 → x = ±2"})
    writer.append({"idx": 1, "response": "\n\n"})
    assert open(path, encoding="utf-8").read() == ('{"idx": 3, "response": "x² = 4 → x = ±2"}\n'
                                                   '{"idx": 1, "response": "\\n\\n"}\n')
    assert writer.done == {1, 3}


# ---- the lock: one writer per shard -------------------------------------------------------------

def test_a_lock_holds_its_pid_refuses_a_second_holder_and_goes_when_released(tmp_path):
    shard = str(tmp_path / "out" / "run.shard0.jsonl")
    lock = ShardLock(shard)
    assert open(shard).read() == ""  # the shard exists from the start
    assert open(lock_path(shard)).read() == f"{os.getpid()}\n"
    assert live_writer(shard) == str(os.getpid())
    refusal = (rf"^{re.escape(shard)} is being written by another run \(pid {os.getpid()}\); wait for it to finish "
               "or stop it, then run again to resume$")
    with pytest.raises(UsageError, match=refusal):
        ShardLock(shard)
    assert open(lock_path(shard)).read() == f"{os.getpid()}\n"  # the refused attempt changed nothing
    lock.release()
    assert not os.path.exists(lock_path(shard)) and live_writer(shard) is None
    lock.release()  # twice is harmless
    again = ShardLock(shard)
    lock.release()  # and a third time does not touch the lock that another holder took since
    assert live_writer(shard) == str(os.getpid())
    again.release()


def test_the_lock_file_is_readable_by_all_and_writable_by_its_owner(tmp_path):
    shard = str(tmp_path / "run.shard0.jsonl")
    umask = os.umask(0o022)
    try:
        lock = ShardLock(shard)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(lock_path(shard)).st_mode) == 0o644
    lock.release()


@pytest.mark.parametrize("content, shown", [(b"", "unknown"), (b"12\xff34\n", "12\ufffd34")])
def test_a_refusal_names_the_holder_as_its_lock_file_says(tmp_path, content, shown):
    shard = str(tmp_path / "run.shard0.jsonl")
    lock = ShardLock(shard)
    with open(lock_path(shard), "wb") as handle:
        handle.write(content)
    with pytest.raises(UsageError) as err:
        ShardLock(shard)
    assert str(err.value) == (f"{shard} is being written by another run (pid {shown}); wait for it to finish or "
                              "stop it, then run again to resume")
    lock.release()


def test_an_unwritable_folder_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError) as err:
        ShardLock(str(tmp_path / "file" / "out" / "x.shard0.jsonl"))
    assert str(err.value) == (f"cannot write x.shard0.jsonl in {tmp_path}/file/out: Not a directory "
                              "(check --output_path)")


def test_a_shard_named_without_a_folder_lives_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "run.shard0.jsonl", '{"idx": 6}\n')
    lock = ShardLock("run.shard1.jsonl")
    writer = ShardWriter("run.shard1.jsonl")
    writer.append({"idx": 7})
    lock.release()
    assert writer.done == {6, 7}
    assert sorted(os.listdir(tmp_path)) == ["run.shard0.jsonl", "run.shard1.jsonl"]


def test_a_lock_keeps_the_records_already_written_and_overwrites_a_stale_pid(tmp_path):
    shard = write(tmp_path / "run.shard0.jsonl", '{"idx": 0}\n')
    with open(lock_path(shard), "w") as handle:
        handle.write("123456789012\n")  # left by a run on a filesystem that kept the file; nobody holds it
    assert live_writer(shard) is None
    lock = ShardLock(shard)
    assert open(lock_path(shard)).read() == f"{os.getpid()}\n"
    assert read_records(shard) == [{"idx": 0}]
    lock.release()


def test_a_filesystem_without_locks_warns_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    shard = str(tmp_path / "run.shard0.jsonl")
    lock = ShardLock(shard)
    assert capsys.readouterr().err == (f"warning: cannot lock {shard} (No locks available); "
                                       "make sure no other run writes it\n")
    assert open(lock_path(shard)).read() == f"{os.getpid()}\n"
    lock.release()
    assert not os.path.exists(lock_path(shard))


def test_a_lock_file_replaced_between_open_and_lock_is_locked_anew(tmp_path, monkeypatch):
    """A run that ends between our open and our lock unlinks the file we opened: locking that
    orphan would let a third run lock the new file alongside us."""
    shard = str(tmp_path / "run.shard0.jsonl")
    real, calls = fcntl.flock, []

    def ending_run_in_between(fd, operation):
        if not calls:  # the first attempt: the file we opened is removed (and recreated) by the ending run
            os.unlink(lock_path(shard))
            open(lock_path(shard), "w").close()
        calls.append(os.fstat(fd).st_ino)
        return real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", ending_run_in_between)
    lock = ShardLock(shard)
    monkeypatch.setattr(fcntl, "flock", real)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert os.stat(lock_path(shard)).st_ino == calls[1]
    assert live_writer(shard) == str(os.getpid())  # the file on disk is the one held
    lock.release()


def test_hold_shards_locks_each_and_releases_all_also_on_error(tmp_path):
    shards = [str(tmp_path / f"run.shard{rank}.jsonl") for rank in range(3)]
    with pytest.raises(KeyError):
        with hold_shards(shards):
            assert [live_writer(s) for s in shards] == [str(os.getpid())] * 3
            raise KeyError("a failed run")
    assert [live_writer(s) for s in shards] == [None] * 3
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".lock")]


def test_a_second_lock_in_hold_shards_releases_the_first(tmp_path):
    shards = [str(tmp_path / f"run.shard{rank}.jsonl") for rank in range(2)]
    other = ShardLock(shards[1])
    with pytest.raises(UsageError, match="is being written by another run"):
        with hold_shards(shards):
            pass
    assert live_writer(shards[0]) is None
    other.release()


# ---- cards at resume and merge ------------------------------------------------------------------

def card(**compared):
    return RunCard({"kind": "collection", "seed": 42, **compared}, {"batch_size": 4}, {"git_commit": "abc"})


def test_check_cards_refuses_a_difference_naming_the_card_the_shards_and_the_flag(tmp_path):
    folder = str(tmp_path)
    write(tmp_path / "run.shard0.jsonl", '{"idx": 0}\n')
    write(tmp_path / "run.shard1.jsonl", "")
    card(seed=42).write(str(tmp_path / "run.shard0.run.json"))
    compare_cards(folder, "run", card(seed=42))  # the same settings: resumes
    compare_cards(folder, "other", card(seed=7))  # another run's stem: nothing to compare
    with pytest.raises(UsageError) as err:
        compare_cards(folder, "run", card(seed=7))
    assert str(err.value) == (
        f"{folder}/run: the existing shards were made with other settings than this run (run.shard0.run.json):\n"
        "  --seed: 42 in the existing shards, 7 now\n"
        "Keep both runs with another --run_id or --output_path, or delete run.shard0.jsonl, run.shard1.jsonl "
        f"and their .run.json cards in {folder} to start this one afresh.")


def test_check_cards_names_each_non_empty_shard_without_a_card_once(tmp_path, capsys):
    write(tmp_path / "run.shard0.jsonl", '{"idx": 0}\n')
    write(tmp_path / "run.shard1.jsonl", "")  # made by this run's lock, nothing in it yet
    write(tmp_path / "run.shard2.jsonl", '{"idx": 1}\n')
    card().write(str(tmp_path / "run.shard2.run.json"))
    compare_cards(str(tmp_path), "run", card())
    assert capsys.readouterr().err == (f"warning: {tmp_path}/run.shard0.jsonl has no run card (another tool "
                                       "wrote it): resuming it as this run and writing its card now\n")
    compare_cards(str(tmp_path), "run", card(), warn=False)
    assert capsys.readouterr().err == ""


def test_a_resume_adds_its_provenance_to_the_card_and_keeps_the_rest(tmp_path):
    shard = str(tmp_path / "run.shard0.jsonl")
    first = card()
    write_shard_card(shard, first)
    resume = RunCard(dict(first.compared), {"batch_size": 64}, {"git_commit": "def"})
    write_shard_card(shard, resume)
    write_shard_card(shard, RunCard(dict(first.compared), {}, {"git_commit": "123"}))
    on_disk = RunCard.read(card_path(shard))
    assert on_disk.as_json() == {**first.as_json(), "resumed": [{"git_commit": "def"}, {"git_commit": "123"}]}


def test_hold_run_refuses_before_locking_or_writing_anything(tmp_path):
    card(seed=1).write(str(tmp_path / "run.shard0.run.json"))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError, match="made with other settings"):
        with hold_run(str(tmp_path), "run", [0, 1], card(seed=2)):
            raise AssertionError("the run must not start")
    assert sorted(os.listdir(tmp_path)) == before
    with hold_run(str(tmp_path), "run", [0, 1], card(seed=1)):
        assert live_writer(str(tmp_path / "run.shard1.jsonl")) == str(os.getpid())
        assert RunCard.read(str(tmp_path / "run.shard1.run.json")).compared == card(seed=1).compared
        assert len(RunCard.read(str(tmp_path / "run.shard0.run.json")).resumed) == 1
    assert sorted(os.listdir(tmp_path)) == ["run.shard0.jsonl", "run.shard0.run.json", "run.shard1.jsonl",
                                            "run.shard1.run.json"]


def test_merging_sorts_records_without_idx_last():
    merged, dropped = merge_records([[{"question": "b"}, {"idx": 2}, {"idx": 0}], [{"question": "a"}, {"idx": 1}]])
    assert merged == [{"idx": 0}, {"idx": 1}, {"idx": 2}, {"question": "b"}, {"question": "a"}]
    assert dropped == 0


def test_merge_shards_writes_where_asked_with_the_merged_card_and_a_summary(tmp_path, capsys):
    folder = str(tmp_path)
    write(tmp_path / "run.shard0.jsonl", '{"idx": 2}\n{"idx": 0, "r": "é"}\n')
    write(tmp_path / "run.shard1.jsonl", '{"idx": 1}\n{"idx": 2}\n')
    card().write(str(tmp_path / "run.shard0.run.json"))
    card().write(str(tmp_path / "run.shard1.run.json"))
    out = str(tmp_path / "elsewhere.jsonl")
    summary = merge_shards(folder, "run", out=out)
    assert summary == {"out": out, "shards": {"run.shard0.jsonl": 2, "run.shard1.jsonl": 2}, "records": 3,
                       "duplicates_dropped": 1, "live": []}
    assert open(out, encoding="utf-8").read() == '{"idx": 0, "r": "é"}\n{"idx": 1}\n{"idx": 2}\n'
    assert RunCard.read(card_path(out)).compared == card().compared
    assert not os.path.exists(tmp_path / "run.merged.jsonl")
    assert capsys.readouterr().err == ""


def test_merge_shards_warns_about_a_live_run_and_a_shard_without_card(tmp_path, capsys):
    write(tmp_path / "run.shard0.jsonl", '{"idx": 0}\n')
    lock = ShardLock(str(tmp_path / "run.shard1.jsonl"))
    try:
        summary = merge_shards(str(tmp_path), "run")
    finally:
        lock.release()
    assert summary["live"] == ["run.shard1.jsonl"] and summary["records"] == 1
    assert capsys.readouterr().err == (
        f"warning: run.shard1.jsonl is still being written (pid {os.getpid()}); this merge may miss records: "
        "merge again when the run ends\n"
        + "".join(f"warning: run.shard{rank}.jsonl has no run card (another tool wrote it): merged without "
                  "checking how it was made\n" for rank in (0, 1)))
    assert not os.path.exists(tmp_path / "run.merged.run.json")  # no card to merge


def test_merge_shards_refuses_a_folder_that_is_not_there_and_cards_that_differ(tmp_path):
    with pytest.raises(UsageError, match=r"^--dir: no such folder: .*nowhere$"):
        merge_shards(str(tmp_path / "nowhere"), "run")
    for rank, seed in enumerate([42, 42, 7]):
        write(tmp_path / f"run.shard{rank}.jsonl", f'{{"idx": {rank}}}\n')
        card(seed=seed).write(str(tmp_path / f"run.shard{rank}.run.json"))
    with pytest.raises(UsageError) as err:
        merge_shards(str(tmp_path), "run")
    assert str(err.value) == ("run.shard2.jsonl and run.shard0.jsonl were made with different settings, so they are "
                              "not one run:\n  --seed: 42 in run.shard0.jsonl, 7 in run.shard2.jsonl\n"
                              "Merge each run on its own (move one run's shards and cards to another folder).")
    assert not os.path.exists(tmp_path / "run.merged.jsonl")
