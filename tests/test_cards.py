"""Run cards (files/cards.py) without a model: the hashes, the card on disk, how a refusal shows
a difference, the merged card, provenance."""

import hashlib
import json
import platform
import re
import socket
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import torch

from rebalance.errors import UsageError
from rebalance.files import cards
from rebalance.files.cards import (
    RunCard,
    describe,
    differences,
    model_files_hash,
    provenance,
    read_card_beside,
    sha256_file,
    sha256_text,
    write_merged_card,
)


def test_differences_name_each_field_once():
    old = {"seed": 42, "coef": -1.0, "model": "m", "vector_sha256": "a" * 64}
    new = {"seed": 7, "coef": -1.0, "model": "m", "vector_sha256": "b" * 64, "top_p": 0.5}
    assert differences(old, new) == [("vector_sha256", "a" * 12, "b" * 12), ("top_p", "unset", "0.5"),
                                      ("seed", "42", "7")]
    assert differences(old, dict(old)) == []


def test_file_and_text_hashes_are_sha256_across_chunk_boundaries(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(str(path), chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_text("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()


def test_a_model_folder_hash_follows_its_config_and_weights_and_nothing_else(tmp_path):
    assert model_files_hash("org/hub-id") is None
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "README.md").write_text("notes")
    first = model_files_hash(str(tmp_path))
    expected = hashlib.sha256(b'{"a": 1}' + b"model.safetensors:10\n").hexdigest()
    assert first == expected
    (tmp_path / "README.md").write_text("other notes")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert model_files_hash(str(tmp_path)) == first
    for name, size in [("extra.bin", 3), ("w.pt", 4), ("m.gguf", 5)]:
        (tmp_path / name).write_bytes(b"y" * size)
        assert model_files_hash(str(tmp_path)) != first
    (tmp_path / "config.json").write_text('{"a": 2}')
    changed = model_files_hash(str(tmp_path))
    assert changed == hashlib.sha256(b'{"a": 2}' + b"extra.bin:3\nm.gguf:5\nmodel.safetensors:10\nw.pt:4\n").hexdigest()


def test_with_an_index_only_the_index_counts_among_the_weights(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (tmp_path / "model-00001.safetensors").write_bytes(b"x")
    with_index = model_files_hash(str(tmp_path))
    assert with_index == hashlib.sha256(b'{"weight_map": {}}').hexdigest()  # no config.json: the index alone
    (tmp_path / "model-00001.safetensors").write_bytes(b"xx")
    assert model_files_hash(str(tmp_path)) == with_index


def test_a_card_reads_back_as_written_with_a_fingerprint_of_its_compared_fields(tmp_path):
    card = RunCard({"seed": 1, "top_p": (0.9,), "model": "m"}, {"batch_size": 8}, {"host": "h"}, [{"host": "g"}])
    assert card.compared == {"seed": 1, "top_p": [0.9], "model": "m"}
    expected = hashlib.sha256(b'{"model": "m", "seed": 1, "top_p": [0.9]}').hexdigest()[:16]
    assert card.fingerprint == expected
    assert RunCard({"model": "m", "top_p": [0.9], "seed": 1}).fingerprint == expected  # key order does not count
    assert RunCard({"model": "m", "top_p": [0.9], "seed": 2}).fingerprint != expected
    path = str(tmp_path / "x.run.json")
    card.write(path)
    on_disk = json.loads(open(path, encoding="utf-8").read())
    assert on_disk == {"card_version": 1, "fingerprint": expected, "compared": card.compared,
                       "recorded": {"batch_size": 8}, "provenance": {"host": "h"}, "resumed": [{"host": "g"}]}
    assert open(path, encoding="utf-8").read() == json.dumps(on_disk, indent=2, ensure_ascii=False) + "\n"
    assert RunCard.read(path).as_json() == on_disk
    unicode = RunCard({"model": "模型-é"})
    unicode.write(path)
    assert '"model": "模型-é"' in open(path, encoding="utf-8").read()  # written as it reads, not \\u-escaped
    assert RunCard.read(path).compared == {"model": "模型-é"}
    minimal = str(tmp_path / "minimal.run.json")
    with open(minimal, "w") as handle:
        json.dump({"compared": {"seed": 3}}, handle)
    assert RunCard.read(minimal).as_json()["recorded"] == {} and RunCard.read(minimal).resumed == []


@pytest.mark.parametrize("text, error", [
    ("{", "JSONDecodeError"),
    ('{"recorded": {}}', "KeyError"),
    ('["compared"]', "TypeError"),
    ('{"compared": 3}', "TypeError"),
    ('{"compared": {}, "resumed": 3}', "TypeError"),
])
def test_an_unreadable_card_is_one_sentence_naming_it(tmp_path, text, error):
    path = tmp_path / "x.run.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=rf"^{re.escape(str(path))}: not a readable run card \({error}: .*\); "
                                         "delete it only together with the records beside it$"):
        RunCard.read(str(path))


def test_a_refusal_shows_hashes_short_and_unset_values_as_such():
    old = {"seed": 42, "vector_sha256": "0123456789abcdef" * 4, "constants": {"b": 1, "a": 2}, "extra_b": 1,
           "extra_a": "x", "model": "X" * 64}
    new = {"seed": 42, "vector_sha256": None, "constants": {"a": 2, "b": 3}, "extra_b": 2, "extra_a": "y",
           "model": "N" * 64, "extra_c": 0}
    diffs = differences(old, new)
    assert diffs == [("model", "X" * 64, "N" * 64), ("vector_sha256", "0123456789ab", "unset"),
                     ("constants", '{"a": 2, "b": 1}', '{"a": 2, "b": 3}'), ("extra_a", "x", "y"),
                     ("extra_b", "1", "2"), ("extra_c", "unset", "0")]
    assert differences({"seed": None}, {}) == []  # unset either way
    assert describe(diffs[1:2]) == ("  --steer_vector_path (the vector's content): 0123456789ab in the existing "
                                    "shards, unset now")
    assert describe([("extra_a", "x", "y"), ("seed", "1", "2")], "before", "after") == (
        "  extra_a: x before, y after\n  --seed: 1 before, 2 after")


def test_the_merged_card_keeps_every_shards_provenance_and_resumes(tmp_path):
    cards = {
        "r.shard0.jsonl": RunCard({"seed": 1}, {"batch_size": 8}, {"git_commit": "b", "git_dirty": False},
                                  [{"git_commit": "c"}]),
        "r.shard1.jsonl": RunCard({"seed": 1}, {"batch_size": 2}, {"git_commit": "a", "git_dirty": True}),
    }
    merged = write_merged_card(cards, str(tmp_path / "r.merged.run.json"))
    assert RunCard.read(str(tmp_path / "r.merged.run.json")).as_json() == merged.as_json()
    assert merged.compared == {"seed": 1} and merged.recorded == {"batch_size": 8}
    assert merged.provenance["shards"] == {"r.shard0.jsonl": {"git_commit": "b", "git_dirty": False},
                                           "r.shard1.jsonl": {"git_commit": "a", "git_dirty": True}}
    assert merged.provenance["git_commit"] == "b" and merged.provenance["git_dirty"] is False
    assert merged.provenance["git_commits"] == ["a", "b", "c"]
    assert merged.resumed == [{"git_commit": "c"}]
    stamp = datetime.fromisoformat(merged.provenance["merged"])
    assert stamp.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - stamp) < timedelta(minutes=5)
    assert read_card_beside(str(tmp_path / "r.merged.jsonl")).as_json() == merged.as_json()
    assert read_card_beside(str(tmp_path / "r.shard0.jsonl")) is None


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git repository with one commit, standing in for the project's checkout."""
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "tracked.py").write_text("x = 1\n")
    git(folder, "add", "tracked.py")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    monkeypatch.setattr(cards, "REPO_ROOT", str(folder))
    return folder


def test_provenance_names_the_commit_and_whether_tracked_files_changed(checkout, monkeypatch):
    import transformers

    from rebalance import __version__

    monkeypatch.setattr("sys.argv", ["/some/where/check.py", "--grader", "paper"])
    found = provenance()
    assert sorted(found) == ["command", "cuda", "device", "git_commit", "git_dirty", "host", "python", "started",
                             "torch", "transformers", "version"]
    assert found["git_commit"] == git(checkout, "rev-parse", "HEAD") and found["git_dirty"] is False
    assert found["command"] == "check.py --grader paper"
    assert found["version"] == __version__ and found["python"] == platform.python_version()
    assert found["torch"] == torch.__version__ and found["transformers"] == transformers.__version__
    assert found["device"] == f"cpu ({platform.machine()})" and found["cuda"] is None
    assert found["host"] == socket.gethostname()
    started = datetime.fromisoformat(found["started"])
    assert started.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - started) < timedelta(minutes=5)
    (checkout / "untracked.txt").write_text("notes")
    assert provenance()["git_dirty"] is False  # an untracked file changes no code
    (checkout / "tracked.py").write_text("x = 2\n")
    assert provenance()["git_dirty"] is True


@pytest.mark.parametrize("where", ["plain folder", "inside another repository", "broken .git"])
def test_provenance_outside_a_checkout_has_no_commit(checkout, monkeypatch, where):
    """An installed copy has no .git of its own; one inside somebody else's repository (a virtual
    environment in a project) must not record that repository's commit."""
    root = {"plain folder": checkout.parent / "plain", "inside another repository": checkout / "site-packages",
            "broken .git": checkout.parent / "broken"}[where]
    root.mkdir()
    if where == "broken .git":
        (root / ".git").mkdir()
    monkeypatch.setattr(cards, "REPO_ROOT", str(root))
    found = provenance()
    assert found["git_commit"] is None and found["git_dirty"] is None


def test_provenance_names_the_gpu_and_survives_a_cuda_that_cannot_answer(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: asked.append(index) or "Some GPU")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    found = provenance()
    assert (found["device"], found["cuda"], asked) == ("Some GPU", "12.8", [0])

    def broken(index):
        raise RuntimeError("no CUDA driver")

    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    found = provenance()
    assert (found["device"], found["cuda"]) == ("unknown", None)
