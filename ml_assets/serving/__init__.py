"""The inference service: the registry's champion behind a FastAPI app, with a prediction log in S3.

Nothing heavy is imported here, so the Dagster resource (`resource.py`) loads without FastAPI or MLflow.
"""
