"""foundryflow: declarative AI-platform pipelines, native on Airflow 3 and Argo Workflows."""

__version__ = "0.1.0"
