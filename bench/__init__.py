"""The benchmarks: scripts that measure the product and write ``bench/results/*.json``.

Run each from the repository root as a module, ``python -m bench.SCRIPT [ARGS]`` (for
example ``python -m bench.search_quality --quick``); ``python -m bench.report`` writes
docs/BENCHMARKS.md from the committed results. Not part of the installed package.
"""
