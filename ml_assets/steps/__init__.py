"""The ML location's steps as plain functions, run in-process or in a pod (see ml_assets.step_runner)."""
