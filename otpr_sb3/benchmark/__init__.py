"""Benchmark harness: tasks with scripted demonstrations, methods in one runner, Ray Tune sweeps, reports.

Needs the ``bench`` extra (``pip install -e ".[bench]"``) for sweeps and reports; the command line is ``otpr``
(``otpr --help``).
"""
