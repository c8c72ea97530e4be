"""Use-case actions (seed 004): cluster_health, deployment_create, helm_deploy, notification."""
