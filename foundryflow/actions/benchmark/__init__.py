"""Benchmark-matrix actions (seed 003): populate, drain with parallel workers, summarise,
and return stale claims to the queue. Thin: the work lives in ``foundryflow.benchmark``."""
