"""Reports over run directories: metrics (pandas), figures (matplotlib), HTML pages, comparisons.

- `sim.report.metrics`: per-endpoint tables with bootstrap intervals, time series, tasks, dispatch;
- `sim.report.figures`: matplotlib figures of those tables;
- `sim.report.analysis`: `analyze_run(path)`, everything a report shows about one run;
- `sim.report.compare`: two runs side by side, significance, `--fail-on` limits;
- `sim.report.html`, `sim.report.cli`: the pages and `smsload report` / `smsload compare`.
"""
