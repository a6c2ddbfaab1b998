"""Job providers, picked by the settings' provider name.

Each provider pairs the process runner (providers/runner.py), the launchers a job may be
started with (providers/launchers.py, providers/standalone.py) and a capacity source
(providers/capacity.py, providers/aws.py); see providers/process.py.
"""

from __future__ import annotations

from dcluster.errors import CapacityUnavailable, ProcessLost, UnsupportedJob
from dcluster.providers.base import Market, Provider
from dcluster.settings import DClusterSettings

__all__ = [
    "CapacityUnavailable",
    "Market",
    "ProcessLost",
    "Provider",
    "UnsupportedJob",
    "make_provider",
    "provider_types",
]


def provider_types() -> dict[str, type[Provider]]:
    """The pairings by the name settings.provider uses: local launchers on simulated capacity,
    the standalone clusters' launchers on simulated capacity, local launchers on EC2 capacity."""
    from dcluster.providers.aws import AwsProvider
    from dcluster.providers.local import LocalProvider
    from dcluster.providers.standalone import StandaloneProvider

    return {"local": LocalProvider, "standalone": StandaloneProvider, "aws": AwsProvider}


def make_provider(settings: DClusterSettings) -> Provider:
    """The pairing named by settings.provider."""
    providers = provider_types()
    try:
        return providers[settings.provider](settings)  # type: ignore[call-arg]
    except KeyError:
        raise ValueError(
            f"unknown DCluster provider {settings.provider!r}; known: {', '.join(sorted(providers))}"
        ) from None
