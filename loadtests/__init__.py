"""Load tests: Locust users that step the `sim.model` agents over real HTTP, `run_load` and `smsload load`.

- `driver`: steps a model generator in wall-clock time (no Locust in it);
- `users`: `AgentUser` and `OperatorUser` (FastHttpUser), `shape`: `FleetShape`;
- `hooks`: options, the run clock, agent ids and the wiring of the records into Locust's events;
- `recorder`, `rundir`: request rows and generator samples, the run directory;
- `export`: the task and command tables, from the server's export API or rebuilt from the requests;
- `run`: `run_load`, the whole load test as one function (the server, Locust, the run directory);
- `locustfile`: the file to give `locust -f`; `cli`: `smsload load`, a thin layer over `run_load`.

To benchmark the generator, write a locustfile that imports `AgentUser` (and the shape, or
a shape of its own), calls `add_arguments`/`install` as `locustfile.py` does, and adds a
plain user beside it: both run in one process, and every request, ours or not, is a row.
"""
