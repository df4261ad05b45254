"""Imports every hardware-model module so that their presets are registered."""

from hwmodels import cpu, flops, gpu, kang, reram, systolic  # noqa: F401
