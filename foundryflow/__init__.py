"""foundryflow: declarative AI-platform pipelines that run natively on Airflow 3 and Argo Workflows."""

__version__ = "0.1.0"
