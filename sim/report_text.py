"""A run's summary as a terminal table (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sim.records import Run


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_summary(run: Run, console: Console) -> None:
    summary = run.summary or {}
    m = run.manifest
    state = "complete" if m.get("complete") else "INCOMPLETE"
    table = Table(title=f"{m.get('run_id')} ({m.get('executor')}, {state})")
    table.add_column("endpoint", no_wrap=True)
    for col in ("count", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"):
        table.add_column(col, justify="right")
    for endpoint, e in sorted(summary.get("endpoints", {}).items(), key=lambda kv: -kv[1]["count"]):
        lat = e["latency_ms"]
        table.add_row(
            endpoint,
            str(e["count"]),
            _fmt(e["throughput_per_s"]),
            _fmt(lat["p50"], 2),
            _fmt(lat["p95"], 2),
            _fmt(lat["p99"], 2),
            _fmt(lat["max"], 2),
            f"{e['error_rate']:.2%}",
        )
    console.print(table)
    tasks, dispatch = summary.get("tasks", {}), summary.get("dispatch", {})
    mig = tasks.get("migration_s") or {}
    console.print(
        f"tasks: {tasks.get('created', 0)} created, {tasks.get('migrated', 0)} migrated, "
        f"{tasks.get('synced', 0)} synced, {tasks.get('failed', 0)} failed, {tasks.get('deleted', 0)} deleted; "
        f"migration p50 {_fmt(mig.get('p50'))} s"
    )
    unfinished = tasks.get("unfinished") or []
    if unfinished:
        console.print(
            f"unfinished tasks: {tasks.get('unfinished_count', len(unfinished))}, "
            f"[bold]{tasks.get('stuck', 0)} stuck[/bold] (not moved for {_fmt(tasks.get('stuck_after_s'))} s)",
            highlight=False,
        )
        for u in unfinished[:5]:
            mark = "STUCK " if u["stuck"] else ""
            console.print(f"  {u['task_id']} {mark}{u['reason']}", markup=False, highlight=False)
        if len(unfinished) > 5:
            console.print("  ... the rest in summary.json (tasks.unfinished) and the report", markup=False)
    d = dispatch.get("enqueue_to_deliver_ms") or {}
    console.print(
        f"command dispatch (enqueued -> delivered): {dispatch.get('commands', 0)} commands, "
        f"p50 {_fmt(d.get('p50'))} ms, p95 {_fmt(d.get('p95'))} ms"
    )
