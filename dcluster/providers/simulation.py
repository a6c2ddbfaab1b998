"""A simulated capacity market, so every spot policy can be exercised on a laptop."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, replace
from typing import Any

from dcluster.config import Simulation, SpotSimulation


class SimulatedMarket:
    """Spot availability, price, fulfilment delay and interruptions; on-demand availability.

    Starts from the config's `simulation:` section; the sim API changes it while the service runs
    (changes are not persisted: a restart goes back to the config).
    """

    simulated = True

    def __init__(self, simulation: Simulation) -> None:
        self._spot = simulation.spot
        self._on_demand_available = simulation.on_demand_available
        self._random = random.Random(simulation.spot.seed)
        self._lock = threading.Lock()

    def spot_quote(self) -> tuple[bool, float, str]:
        """(available, price per hour, reason when not) of spot capacity right now."""
        with self._lock:
            spot = self._spot
        if not spot.available:
            return False, spot.price, "capacity-not-available"
        return True, spot.price, ""

    def fulfil_delay_s(self) -> float:
        """Seconds a spot request stays open before the market answers it."""
        with self._lock:
            return self._spot.fulfil_delay_s

    def on_demand_available(self) -> bool:
        """False while on-demand launches fail (e.g. InsufficientInstanceCapacity)."""
        with self._lock:
            return self._on_demand_available

    def interrupted(self, seconds: float) -> bool:
        """Whether one running spot instance receives a notice during the next `seconds`."""
        with self._lock:
            rate = self._spot.interruption_rate_per_hour
            return rate > 0 and self._random.random() < rate * seconds / 3600.0

    def set_spot(self, **changes: Any) -> dict[str, Any]:
        """Change spot availability, price, fulfilment delay or interruption rate; returns the state."""
        allowed = {"available", "price", "fulfil_delay_s", "interruption_rate_per_hour"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown spot simulation keys: {', '.join(sorted(unknown))}")
        with self._lock:
            self._spot = replace(self._spot, **{k: v for k, v in changes.items() if v is not None})
        return self.state()

    def set_on_demand(self, available: bool) -> dict[str, Any]:
        """Make on-demand launches succeed or fail; returns the state."""
        with self._lock:
            self._on_demand_available = bool(available)
        return self.state()

    def state(self) -> dict[str, Any]:
        """The market as JSON."""
        with self._lock:
            spot: SpotSimulation = self._spot
            return {
                "spot": {k: v for k, v in asdict(spot).items() if k != "seed"},
                "on_demand": {"available": self._on_demand_available},
            }
