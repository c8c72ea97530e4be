"""The twelve guardrail actions of seed 000: onboarding (validate_credential,
batch_onboard_models, update_rule_model_ids), cluster recommendation (parallel_simulate,
aggregate_requirements, validate_cluster_fit) and deployment (deploy_models, create_profile,
create_deployment, build_config, sync_redis, rollback). Thin: the rules live in
``foundryflow.guardrail``, the math in ``foundryflow.sim``, the outside world behind
``foundryflow.cluster``, ``foundryflow.registry`` and ``foundryflow.configsync``."""
