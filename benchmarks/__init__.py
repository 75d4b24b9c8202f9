"""Benchmarks of the exporter against a bare client posting the same batches to the same sandbox (SPEC section 10).

Run ``python -m benchmarks.run`` from the repository root; see benchmarks/README.md.
"""
