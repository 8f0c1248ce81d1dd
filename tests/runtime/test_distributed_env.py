"""Rank and world size from torchrun's and SLURM's variables (open_clip's world_info_from_env)."""

import pytest

from pmilab.runtime.distributed import DistInfo, detect


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, DistInfo(0, 1, 0)),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, DistInfo(5, 8, 1)),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"}, DistInfo(0, 1, 0)),
        # torchrun's variables win over SLURM's (torchrun inside an sbatch job)
        (
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3", "SLURM_PROCID": "0"}
            | {"SLURM_NTASKS": "1", "SLURM_LOCALID": "0"},
            DistInfo(3, 4, 3),
        ),
        ({"PMI_RANK": "2", "PMI_SIZE": "3"}, DistInfo(2, 3, 0)),
        ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}, DistInfo(1, 2, 0)),
    ],
)
def test_rank_and_world_come_from_the_launcher(env, expected):
    assert detect(env) == expected


def test_slurm_variables_in_the_process_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "6")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_LOCALID", "2")
    info = detect()
    assert (info.rank, info.world, info.local_rank, info.main) == (6, 16, 2, False)
