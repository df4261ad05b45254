"""Imports every hardware-model module so that their presets are registered."""
