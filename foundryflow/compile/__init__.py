"""Compilers that turn pipeline specs into engine artefacts (Airflow DAGs, Argo documents)."""
