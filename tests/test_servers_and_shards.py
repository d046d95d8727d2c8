"""Past one server and one machine without Ray: `--api-base` repeated spreads the calls
over several servers; `--shard auto` takes i/N from a Slurm array or RANK / WORLD_SIZE."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from dvsynth.config import GenerateConfig
from dvsynth.errors import UserError
from dvsynth.llm.servers import ServerPool
from dvsynth.seeds.shards import shard_from_environment
from dvsynth.testing import FakeLLMServer
from tests.conftest import comparable_rows, generate_args, read_rows
from tests.test_batch_file import SAMPLE


def test_two_servers_both_receive_work_and_rows_equal_one_server(run_cli, tmp_path):
    with FakeLLMServer(latency=0.05) as one, FakeLLMServer(latency=0.05) as two:
        spread = tmp_path / "spread"
        args = generate_args(one, SAMPLE, spread, "--limit", "24", "--concurrency", "4")
        args += ["--api-base", two.api_base]
        assert run_cli(*args).code == 0
        assert one.total_requests >= 6 and two.total_requests >= 6
        assert one.total_requests + two.total_requests == 24
        single = tmp_path / "single"
        assert run_cli(*generate_args(one, SAMPLE, single, "--limit", "24")).code == 0
    assert comparable_rows(read_rows(spread)) == comparable_rows(read_rows(single))


def test_server_pool_keeps_each_server_under_its_cap():
    pool = ServerPool(servers=3, per_server=2)
    peak = [0, 0, 0]

    async def call() -> None:
        async with pool.slot() as index:
            peak[index] = max(peak[index], pool.in_flight[index])
            await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.gather(*(call() for _ in range(60)))

    asyncio.run(main())
    assert max(peak) == 2
    assert pool.sent == [20, 20, 20]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, "2/4"),
        (  # --array=1-8: ids start at 1
            {
                "SLURM_ARRAY_TASK_ID": "8",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_MIN": "1",
            },
            "7/8",
        ),
        ({"RANK": "0", "WORLD_SIZE": "3"}, "0/3"),
    ],
)
def test_shard_auto_reads_the_launcher(environ, expected):
    assert shard_from_environment(environ) == expected


def test_shard_auto_is_resolved_into_the_run_identity(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = GenerateConfig(shard="auto")
    assert config.shard == "1/2"
    assert "shard1of2" in str(config.run_dir(config.identity({})))


def test_shard_auto_without_a_launcher_is_one_line_exit_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvsynth.cli",
            "generate",
            "--shard",
            "auto",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--shard auto" in lines[0], done.stderr
    with pytest.raises(UserError):
        shard_from_environment({"RANK": "5", "WORLD_SIZE": "2"})
