"""The guardrail deployment domain of seed 000: model status derivation, rule selection and
skip logic (:mod:`.status`), and demo data (:mod:`.demo`). State lives in
:mod:`foundryflow.store.guardrail`; the pipeline actions in ``foundryflow.actions.guardrail``.
"""
