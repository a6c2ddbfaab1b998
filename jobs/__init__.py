"""Spark job entry points. Each module has main(argv) -> int and is launched by jobs/run.py."""
