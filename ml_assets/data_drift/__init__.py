"""Columnar data-drift detection with Evidently-compatible defaults."""
