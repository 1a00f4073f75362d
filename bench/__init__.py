"""Benchmarks for arcnn's inference (``python -m bench.<name> [--quick] [--json PATH]``).

Every throughput is reported in megapixels/s and as a fraction of the *floor*: the multiply-adds
per pixel of the architecture, at the matrix-multiply rate this machine measures in the same run
(sampled right next to each measurement, so the ratio holds even on a shared machine). Results
are printed as tables and written as JSON to bench/out/ (git-ignored); docs/performance.md
records a run.
"""
