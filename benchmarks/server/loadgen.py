"""The load generators of the server benchmark: wrk (preferred) and a built-in asyncio client.

Both send the same requests over C keep-alive connections, one request in flight per
connection, for a fixed time:

- `hello`: `GET /` (the hello app answers any path);
- `poll`: `GET /v1/sms/sources/{id}/command` for a random registered source;
- `mix`: every `every`-th request of a connection is `PUT /v3/tasks/{id}/progress` on one of
  the connection's own tasks (in turn), one progress step higher than the last; the rest
  are polls. A connection owns its tasks, so a task's progress only goes up, and the
  generator remembers the highest step acknowledged (HTTP 200) per task.

wrk runs `requests.lua` (the same plan in Lua) with one thread per connection; the built-in
client runs `Plan` below. Either returns a `LoadResult`.
"""

from __future__ import annotations

import asyncio
import random
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().with_name("requests.lua")
STEPS_PER_SUBTASK = 101  # progress 0..100


def max_step(subtasks: list[str]) -> int:
    """The last step a load may report: the last subtask at 100 would complete the task."""
    return len(subtasks) * STEPS_PER_SUBTASK - 2


def step_position(k: int) -> tuple[int, int]:
    """Step k as (subtask index, progress)."""
    return divmod(k, STEPS_PER_SUBTASK)


@dataclass
class LoadResult:
    requests: int  # responses received
    elapsed_s: float
    generator_cpu_s: float
    transport_errors: int = 0  # connect/read/write errors and timeouts
    status_errors: int = 0  # responses other than 200
    writes: int = 0
    writes_ok: int = 0
    exhausted: int = 0  # writes replaced by a poll because the connection's tasks were all done
    acked: dict[str, int] = field(default_factory=dict)  # task -> highest acknowledged step
    unanswered: dict[str, int] = field(default_factory=dict)  # task -> step sent, no answer at the stop


@dataclass
class Job:
    """One measured load: what to send, where, over how many connections, for how long."""

    mode: str  # hello | poll | mix
    url: str
    token: str
    connections: int
    seconds: float
    ids_file: Path  # the registered source ids, one a line
    tasks_file: Path  # "SET CONN TASK_ID" lines: the tasks each connection owns in each set
    task_set: int
    every: int  # mix: every `every`-th request of a connection is a progress write
    subtasks: list[str]


# -- wrk ---------------------------------------------------------------------------------------


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout  # exits 1 by design
    found = re.search(r"wrk (\S+)", out)
    return f"wrk {found.group(1)}" if found else "wrk"


def run_wrk(job: Job) -> LoadResult:
    args = [
        shutil.which("wrk") or "wrk",
        "-t",
        str(job.connections),
        "-c",
        str(job.connections),
        "-d",
        f"{job.seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        job.url,
        "--",
        job.mode,
        job.token,
        str(job.ids_file),
        str(job.tasks_file),
        str(job.task_set),
        str(job.every),
        ",".join(job.subtasks),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # subprocess.run kills wrk (by its PID) if this process is interrupted while waiting.
    proc = subprocess.run(args, capture_output=True, text=True, timeout=job.seconds + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or "RESULT " not in proc.stdout:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = LoadResult(0, 0.0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    ok = 0
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "RESULT":
            f = dict(kv.split("=") for kv in rest.split())
            result.requests, result.elapsed_s = int(f["requests"]), int(f["duration_us"]) / 1e6
            result.transport_errors = sum(int(f[k]) for k in ("connect", "read", "write", "timeout"))
        elif kind == "COUNTS":
            f = dict(kv.split("=") for kv in rest.split())
            ok += int(f["polls_ok"]) + int(f["writes_ok"]) + int(f["other_ok"])
            result.writes += int(f["writes"])
            result.writes_ok += int(f["writes_ok"])
            result.exhausted += int(f["exhausted"])
        elif kind in ("ACK", "UNANSWERED"):
            task, k = rest.split()
            (result.acked if kind == "ACK" else result.unanswered)[task] = int(k)
    result.status_errors = result.requests - ok
    return result


# -- the built-in client -------------------------------------------------------------------------


class Plan:
    """What one connection sends next, and what it remembers of the answers (as requests.lua)."""

    def __init__(self, job: Job, conn: int, ids: list[str], own: list[str]) -> None:
        self.job, self.ids, self.own = job, ids, own
        self.rng = random.Random(conn * 1_000_003 + job.task_set)
        self.max_step = max_step(job.subtasks)
        self.step = {task: 0 for task in own}
        self.n = self.next_task = 0
        self.pending: tuple[str, int] | None = None
        self.host = job.url.split("://", 1)[1].rstrip("/")
        self.get_headers = f"Host: {self.host}\r\nX-Auth-Token: {job.token}\r\n"
        self.hello = f"GET / HTTP/1.1\r\n{self.get_headers}\r\n".encode()

    def request(self, result: LoadResult) -> bytes:
        self.n += 1
        self.pending = None
        if self.job.mode == "hello":
            return self.hello
        if self.job.mode == "mix" and self.n % self.job.every == 0:
            for _ in self.own:
                task = self.own[self.next_task]
                self.next_task = (self.next_task + 1) % len(self.own)
                k = self.step[task]
                if k < self.max_step:
                    k += 1
                    self.step[task], self.pending = k, (task, k)
                    result.unanswered[task] = k
                    sub, progress = step_position(k)
                    body = (
                        f'{{"subtask_name":"{self.job.subtasks[sub]}","progress":{progress},'
                        f'"replicatesize":{k * 1048576},"totalsize":{(self.max_step + 1) * 1048576},'
                        f'"process_trace":"bench"}}'
                    ).encode()
                    return (
                        f"PUT /v3/tasks/{task}/progress HTTP/1.1\r\n{self.get_headers}"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode() + body
            result.exhausted += 1
        source = self.ids[self.rng.randrange(len(self.ids))]
        return f"GET /v1/sms/sources/{source}/command HTTP/1.1\r\n{self.get_headers}\r\n".encode()

    def answered(self, status: int, result: LoadResult) -> None:
        result.requests += 1
        if status != 200:
            result.status_errors += 1
        if self.pending is not None:
            task, k = self.pending
            result.writes += 1
            result.unanswered.pop(task, None)
            if status == 200:
                result.writes_ok += 1
                result.acked[task] = k
        self.pending = None


async def _connection(plan: Plan, host: str, port: int, deadline: float, result: LoadResult) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        result.transport_errors += 1
        return
    try:
        while time.monotonic() < deadline:
            writer.write(plan.request(result))
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(found.group(1)) if found else 0)
            plan.answered(int(head[9:12]), result)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        result.transport_errors += 1
    finally:
        writer.close()


def run_builtin(job: Job) -> LoadResult:
    """The built-in client: one asyncio loop, `job.connections` connections; stops sending at
    the deadline and waits for the answers in flight (so nothing is left unanswered)."""
    ids = job.ids_file.read_text().split()
    owned: dict[int, list[str]] = {}
    for line in job.tasks_file.read_text().splitlines():
        s, c, task = line.split()
        if int(s) == job.task_set:
            owned.setdefault(int(c), []).append(task)
    host, port = job.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    result = LoadResult(0, 0.0, 0.0)
    plans = [Plan(job, c, ids, owned.get(c, []) if job.mode == "mix" else []) for c in range(1, job.connections + 1)]

    async def main() -> None:
        deadline = time.monotonic() + job.seconds
        await asyncio.gather(*(_connection(p, host, int(port), deadline, result) for p in plans))

    cpu0, t0 = time.process_time(), time.monotonic()
    asyncio.run(main())
    result.elapsed_s, result.generator_cpu_s = time.monotonic() - t0, time.process_time() - cpu0
    return result
