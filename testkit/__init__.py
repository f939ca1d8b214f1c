"""What the tests and the benchmarks share: a real control plane, load generators, manifests and models.

Its own package, so that ``bench/`` never imports ``tests/`` (the import-layer test enforces it).
"""
