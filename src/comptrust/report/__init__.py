"""Reports: dense vs compressed tables, bootstrap deltas, figures, findings (HTML, Markdown, CSV, JSON).

The entry point is :func:`comptrust.report.build.write_report`.
"""

DEFAULT_BOOTSTRAP = 300  # resamples per perspective; docs/reports.md has the timings
