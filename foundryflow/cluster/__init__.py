"""Cluster backends: put charts on Kubernetes clusters and find what they serve.

``base`` is the contract (``ClusterBackend``, ``ReleaseSpec``, errors), ``helm`` the backend
for real clusters, ``render`` the offline Helm rendering the local backend builds on. The
package import stays light: ``render`` (native Helm library) is imported only by its users.
"""

from foundryflow.cluster.base import (
    BackendUnavailableError,
    ChartReferenceError,
    ClusterBackend,
    ClusterCommandError,
    ClusterError,
    ClusterTimeoutError,
    Endpoint,
    InvalidReleaseError,
    KubeconfigError,
    ManifestValidationError,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseState,
    ReleaseStatus,
    ValuesValidationError,
)
from foundryflow.cluster.helm import HelmBackend

__all__ = [
    "BackendUnavailableError",
    "ChartReferenceError",
    "ClusterBackend",
    "ClusterCommandError",
    "ClusterError",
    "ClusterTimeoutError",
    "Endpoint",
    "HelmBackend",
    "InvalidReleaseError",
    "KubeconfigError",
    "ManifestValidationError",
    "ReleaseNotFoundError",
    "ReleaseSpec",
    "ReleaseState",
    "ReleaseStatus",
    "ValuesValidationError",
]
