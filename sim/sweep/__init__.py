"""Capacity sweeps: one scenario run over a grid of fleet sizes, poll intervals and server configurations.

`grid` reads `--vary` specs into the points of the grid (every combination, times the
replications, each a validated Scenario with its own seed); `engines` names the simulation
engines a point can run on (imported lazily: the compiled engine may be absent); `runner`
runs the points on local processes or a Dask cluster and keeps `sweep.parquet` (a row per
finished point, so an interrupted sweep resumes where it stopped); `cli` is `smsload sweep`.
The analysis of a sweep (the largest fleet meeting the SLO) is `sim.report.capacity_sweep`:
running a model and reading its results stay apart, as everywhere in the project.
"""
