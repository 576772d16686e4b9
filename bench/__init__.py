"""Benchmarks: scripts anyone can rerun; results are recorded in bench/README.md.

``python -m bench`` runs every benchmark in ``bench.__main__.BENCHMARKS``;
``python -m bench NAME [options]`` runs one.
"""
