"""The private torch engine: modules, losses, training loop, numpy <-> torch boundary.

Nothing here imports the estimators; the estimators call into this package.
"""
