"""Pipeline deployments (seed 001): pools of pipeline runners installed with Helm onto the
nodes a selector picks, with revisions, rollback and soft delete."""
