"""Flink job entry points, run in .venv-flink by jobs/flink/run.py; each module has main(argv) -> int."""
