"""Helpers shared by the test tiers; nothing here is collected as a test."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
