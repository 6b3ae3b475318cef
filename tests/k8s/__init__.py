"""Tests of the k3s target against a Kubernetes API fake and the real schemas."""
