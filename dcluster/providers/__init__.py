"""Job providers, picked by the settings' provider name."""
from __future__ import annotations

from dcluster.providers.base import Provider, UnsupportedJob
from dcluster.settings import DClusterSettings

__all__ = ["Provider", "UnsupportedJob", "make_provider"]


def make_provider(settings: DClusterSettings) -> Provider:
    """The provider named by settings.provider."""
    from dcluster.providers.local import LocalProvider

    providers: dict[str, type[Provider]] = {"local": LocalProvider}
    try:
        return providers[settings.provider](settings)  # type: ignore[call-arg]
    except KeyError:
        raise ValueError(
            f"unknown DCluster provider {settings.provider!r}; known: {', '.join(sorted(providers))}"
        ) from None
