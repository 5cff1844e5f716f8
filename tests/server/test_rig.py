"""The knee rig's server limits: the store latency, core pinning and the cgroup CPU quota.

The quota is checked against a directory laid out as cgroup v1 or v2 (the files the kernel
reads), and once for real where this machine allows it (root, a writable cpu controller):
the server then runs inside its own cgroup, which is gone once the server has stopped.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from sim.model.distributions import Constant, LogNormal
from sim.model.store import MemoryStore
from sim.server.process import run_server
from sim.server.rig import CpuQuota, DelayedStore, RigError, parse_cpus, parse_latency

TOKEN = "rig-test-token"


def test_latency_specs() -> None:
    assert parse_latency("lognormal:4,0.3") == LogNormal(4.0, 0.3)
    assert parse_latency("2.5") == Constant(2.5)
    for bad in ("lognormal:4", "gamma:1,2", "exponential:-1", "x"):
        with pytest.raises(RigError, match="--store-latency-ms"):
            parse_latency(bad)


def test_every_store_transaction_waits_out_the_latency() -> None:
    store = DelayedStore(MemoryStore(), Constant(20.0))
    started = time.monotonic()
    with store.read() as tx:
        assert tx.source_brief("nobody") is None
    with store.write():
        pass
    assert time.monotonic() - started >= 0.04  # two transactions of 20 ms: a lower bound, not a timing
    assert store.commands() == []  # everything else is the store's own


def test_cores_must_be_this_process_s() -> None:
    have = sorted(os.sched_getaffinity(0))
    assert parse_cpus(str(have[0])) == {have[0]}
    with pytest.raises(RigError, match="--cpus"):
        parse_cpus("999")
    with pytest.raises(RigError, match="--cpus"):
        parse_cpus("a-b")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_quota_writes_the_cgroup_files(tmp_path: Path, version: str) -> None:
    if version == "v1":
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    else:
        (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory")
    quota = CpuQuota(0.25, 1000, root=tmp_path)
    quota.apply()
    assert quota.path is not None and (quota.path / "cgroup.procs").read_text() == str(os.getpid())
    if version == "v1":
        assert (quota.path / "cpu.cfs_quota_us").read_text() == "1000"  # at least 1 ms of quota per period
        assert (quota.path / "cpu.cfs_period_us").read_text() == "1000"
    else:
        assert (quota.path / "cpu.max").read_text() == "1000 1000"
    (quota.path / "cgroup.procs").unlink()  # a real cgroup's files go with it
    for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.max"):
        (quota.path / name).unlink(missing_ok=True)
    made = quota.path
    quota.release()
    assert not made.exists()


def test_quota_without_a_cpu_controller_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="no writable cgroup cpu controller"):
        CpuQuota(0.5, root=tmp_path).apply()
    with pytest.raises(RigError, match="--cpu-quota"):
        CpuQuota(0.0, root=tmp_path).apply()


@pytest.mark.skipif(
    not os.access("/sys/fs/cgroup/cpu", os.W_OK) and not os.access("/sys/fs/cgroup/cgroup.procs", os.W_OK),
    reason="needs a writable cgroup cpu controller (root)",
)
def test_a_limited_server_answers_inside_its_cgroup_and_removes_it(tmp_path: Path) -> None:
    args = ("--store-latency-ms", "constant:1", "--cpus", "0", "--cpu-quota", "0.5")
    with run_server("memory://", [TOKEN], tmp_path / "server.log", extra=args) as server:
        found = re.search(r"cgroup (\S+)\)", server.log())
        assert found, server.log()
        group = Path(found.group(1))
        assert str(server.pid) in (group / "cgroup.procs").read_text().split()
        assert os.sched_getaffinity(server.pid) == {0}
        r = httpx.get(f"{server.base_url}/v3/sources", headers={"X-Auth-Token": TOKEN}, timeout=10)
        assert r.status_code == 200
        assert float(r.headers["server-timing"].split("dur=")[1]) >= 1.0  # the store's millisecond
    assert server.exit_code == 0
    assert not group.exists()


def test_bad_rig_options_are_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    from sim.cli import main

    for args, mentions in (
        (["--store-latency-ms", "gamma:1"], "--store-latency-ms"),
        (["--cpu-quota", "abc"], "--cpu-quota"),
        (["--cpus", "99"], "--cpus"),
    ):
        assert main(["serve", "--db", "memory://", "--port", "0", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and mentions in err[0]
