"""Model registry: onboarding reads a model's ``config.json`` and records its architecture.

- :mod:`.config_sources` finds the ``config.json`` (local directory, bundled catalog,
  Hugging Face Hub), in an order the caller or the environment chooses;
- :mod:`.architecture` turns it into an :class:`~.architecture.Architecture`, computing the
  parameter count from the shapes;
- :mod:`.onboard` records it in the ``models`` / ``model_versions`` tables, idempotently.
"""
