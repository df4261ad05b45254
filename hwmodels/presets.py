"""Imports every hardware-model module so that their presets are registered."""

from hwmodels import flops, gpu, kang, reram, systolic  # noqa: F401
