"""Imports every hardware-model module so that their presets are registered."""

from hwmodels import kang, systolic  # noqa: F401
