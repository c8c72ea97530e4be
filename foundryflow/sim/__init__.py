"""An analytic model of LLM serving: memory fit, latency and throughput of a replica, and
the smallest configuration per hardware option for a workload (issue 4, "Simulator").

* :mod:`~foundryflow.sim.specs` — the validated inputs (model, hardware, workload);
* :mod:`~foundryflow.sim.constants` — efficiencies and reserves, each with its source;
* :mod:`~foundryflow.sim.model` — the math for one replica (:func:`simulate`);
* :mod:`~foundryflow.sim.capacity` — seed 002's RPS capacity formula;
* :mod:`~foundryflow.sim.recommend` — the smallest feasible configuration (:func:`recommend`);
* :mod:`~foundryflow.sim.catalog` — names to specs, from the database or the seed;
* :mod:`~foundryflow.sim.cli` and :mod:`~foundryflow.sim.runner` — ``foundryflow simulate``
  and the matrix's ``simulate`` runner.

Nothing is imported here: ``foundryflow.sim.cli`` is imported by every ``foundryflow``
invocation, which must stay cheap.
"""
