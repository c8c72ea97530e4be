"""The benchmark matrix (seed 003): catalog seed data, population, the SKIP LOCKED queue,
workers and runners."""
