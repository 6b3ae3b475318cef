"""The one error of the Kubernetes client layer, apart so that the client and its workload-health mixin share it
without importing each other."""

from __future__ import annotations


class KubeError(Exception):
    """A one-line error naming the object and the API server's message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
