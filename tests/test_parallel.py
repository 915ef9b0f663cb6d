"""Which rank owns which example, and which device a launched process takes."""

import pytest

from rebalance.parallel import Rank, launched_rank, local_device


@pytest.mark.parametrize("local_rank, devices, expected", [
    (0, 8, "cuda:0"),
    (5, 8, "cuda:5"),
    (5, 1, "cuda:0"),  # one GPU per task (CUDA_VISIBLE_DEVICES narrowed), LOCAL_RANK still counting
    (9, 4, "cuda:1"),
    (3, 0, "cpu"),
])
def test_a_launched_process_takes_its_local_rank_modulo_the_visible_devices(local_rank, devices, expected):
    assert local_device(local_rank, devices) == expected


def test_launched_rank_reads_the_launchers_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched_rank() is None
    monkeypatch.setenv("RANK", "5")
    assert launched_rank() is None  # a RANK alone is not a launch
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched_rank() == Rank(5, 8, "cpu")  # this machine has no CUDA


def test_example_i_belongs_to_rank_i_mod_world():
    ranks = [Rank(r, 3, "cpu") for r in range(3)]
    assert [[i for i in range(10) if rank.owns(i)] for rank in ranks] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
