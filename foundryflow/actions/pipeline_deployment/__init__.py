"""Pipeline-deployment actions (seed 001): deploy, update, rollback, delete, get, list, purge."""
