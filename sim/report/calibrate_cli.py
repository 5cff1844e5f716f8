"""`smsload calibrate RUN -o SCENARIO.yaml`: a scenario whose simulated server is fitted to RUN.

The file is the run's own scenario (from its manifest) with the `server:` section replaced
by the fit of `sim.report.calibrate`, commented: what each distribution was fitted from, on
how many requests, and how far it misses the data. `smsload validate` accepts it and
`smsload sim` runs it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.cli_support import UsageError, add_command

if TYPE_CHECKING:  # imported when used: the fit pulls in scipy and pandas, 1.7 s on every smsload start
    from sim.report.calibrate import Calibration, Fit

_PER_LINE = 10  # empirical values per line of the flow list


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "calibrate",
        help="fit the simulated server to a run and write the calibrated scenario",
        description="Fit the simulated server of RUN's scenario to what RUN measured: per-endpoint service times "
        "(Server-Timing plus the server's time outside the handler, or low-load latency minus the round "
        "trip), the round trip, the number of workers. Writes the run's scenario with its server: "
        "section replaced, commented with the fit. See README 'Calibration' for the method and limits.",
        examples=[
            "smsload calibrate runs/qs -o runs/qs-calibrated.yaml",
            "smsload calibrate runs/low -o cal.yaml --probe runs/ramp   # + capacity from a run past it",
        ],
    )
    p.add_argument("run", metavar="RUN", type=Path, help="run directory (smsload load, or smsload sim)")
    p.add_argument("-o", "--out", type=Path, required=True, help="scenario YAML file to write")
    p.add_argument(
        "--overhead-ms",
        type=float,
        help="server time per request outside the handler, added to each "
        "service time (default 0.05 for a load test, 0 for a simulation)",
    )
    p.add_argument("--workers", type=int, help="server workers (default: 1 for a load test, as smsload serve runs)")
    p.add_argument("--rtt-ms", type=float, help="a constant round trip instead of the fitted one")
    p.add_argument(
        "--probe",
        type=Path,
        help="a run whose load went past the server's capacity (e.g. a ramp of agents): gives the capacity "
        "and, unless --workers, the number of concurrent servers (saturated throughput x mean service)",
    )
    p.add_argument("--after-s", type=float, default=0.0, help="leave out requests sent before this (a warm-up)")
    p.add_argument(
        "--probe-after-s",
        type=float,
        help="the probe's own warm-up (default: --after-s); e.g. the end of its arrival, so that its capacity "
        "is the whole fleet's (a server's capacity can fall as its fleet and queue grow)",
    )
    p.add_argument("--from-latency", action="store_true", help="ignore server_ms: service = low-load latency - rtt")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from sim.records import RunDirError
    from sim.report.calibrate import CalibrationError, calibrate
    from sim.scenario import ScenarioError

    for path in (args.run, args.probe):
        if path is not None and not path.is_dir():
            raise UsageError(f"{path} is not a run directory (no such directory)")
    for flag, value in (("--overhead-ms", args.overhead_ms), ("--rtt-ms", args.rtt_ms)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be at least 0, got {value}")
    if args.probe_after_s is not None and args.probe is None:
        raise UsageError("--probe-after-s needs --probe (it is the probe run's warm-up)")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    try:
        cal = calibrate(
            args.run,
            overhead_ms=args.overhead_ms,
            workers=args.workers,
            rtt_ms=args.rtt_ms,
            from_latency=args.from_latency,
            after_s=args.after_s,
            probe=args.probe,
            probe_after_s=args.probe_after_s,
        )
    except (RunDirError, CalibrationError) as exc:
        raise UsageError(str(exc)) from None
    except ScenarioError as exc:
        raise UsageError(str(exc).replace("\n", "; ")) from None
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(to_yaml(cal), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(args.out)
    return 0


def _dist_yaml(spec: dict[str, Any], indent: str) -> str:
    """One distribution in flow style; an empirical list wrapped over lines."""
    if spec["dist"] != "empirical":
        return "{" + ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}" for k, v in spec.items()) + "}"
    values = [f"{v:g}" for v in spec["values"]]
    lines = [", ".join(values[i : i + _PER_LINE]) for i in range(0, len(values), _PER_LINE)]
    inner = (",\n" + indent + "    ").join(lines)
    return "{dist: empirical, values: [\n" + indent + "    " + inner + "]}"


def _fit_comment(fit: Fit) -> str:
    return f"# {fit.n:,} requests; {fit.source}; worst misfit {fit.error:.1%}"


def to_yaml(cal: Calibration) -> str:
    """The calibrated scenario as a commented YAML file (the server section written by hand, with comments)."""
    data = cal.scenario.to_dict()
    data.pop("server")
    head = [
        f"# Calibrated by `smsload calibrate` from run {cal.run_id} ({cal.executor}, {cal.run_path}),",
        f"# {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Everything but `server:` is the run's own",
        "# scenario. The server section is fitted to the run (method and limits: README 'Calibration',",
        "# sim/report/calibrate.py). Service times in ms, per endpoint; `default` for endpoints with few requests.",
    ]
    head += [f"# Note: {line}" for line in cal.notes]
    import yaml

    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
    at = cal.scenario.server.calibrated
    assert at is not None  # calibrate always records where
    server = [
        "",
        "server:",
        "  # where the fit was made and checked: the calibration run's utilisation (latency holds near it),",
        "  # the probe's saturated throughput and its peak offered load over it (above 1: it saturated)",
        f"  calibrated: {{run_id: {at.run_id!r}, utilisation: {at.utilisation:g}, probe_run_id: {at.probe_run_id!r},",
        f"    capacity_per_s: {at.capacity_per_s:g}, probe_offered_over_capacity: {at.probe_offered_over_capacity:g}}}",
        f"  # {cal.workers_source}",
        f"  workers: {cal.workers}",
        "  # kept from the run's scenario",
        f"  write_lock: {'true' if cal.scenario.server.write_lock else 'false'}",
        "  # a load test's server is one event loop per worker: a request with a body queues again for it,",
        "  # once per await of its body (granian: two)",
        f"  requeue_bodies: {cal.scenario.server.requeue_bodies}",
        "  # ... behind this share of the requests waiting: fresh ones still in granian's hand-over are not yet there",
        f"  requeue_at: {cal.scenario.server.requeue_at:g}",
        "  # a request that finds its worker free takes this much more (the probe's server took less per request,",
        "  # back to back, than the run's requests, each alone)",
        f"  idle_start_ms: {cal.scenario.server.idle_start_ms:g}",
        "  # how the server recorded visits: kept from the run's scenario",
        "  liveness: {" + ", ".join(f"{k}: {v}" for k, v in cal.scenario.server.liveness.to_dict().items()) + "}",
        f"  # round trip (network + client-side time), {_fit_comment(cal.rtt)[2:]}",
        f"  rtt_ms: {_dist_yaml(cal.rtt.dist.to_spec(), '  ')}",
        f"  # service = handler time + {cal.overhead_ms:g} ms outside the handler ({cal.overhead_source})",
    ]
    own = {name: ms for name, ms in cal.outside_ms.items() if name != "default"}
    if own:
        server.append(
            "  # outside the handler per endpoint (the level + its excess over the quickest endpoint): "
            + ", ".join(f"{name} {ms:.3f} ms" for name, ms in own.items())
        )
    server.append("  service_ms:")
    for name, fit in cal.service.items():
        server += [f"    {_fit_comment(fit)}", f"    {name}: {_dist_yaml(fit.dist.to_spec(), '    ')}"]
    return "\n".join(head) + "\n" + body + "\n".join(server) + "\n"
