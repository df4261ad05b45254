"""The ground floor every other package stands on: pieces with no hwprune imports.

``core.registry``: the name -> factory ``Registry`` behind workloads, schemes, hardware
presets, proxies and agents, with its did-you-mean errors.

``core.params``: ``Param`` and ``Schema``, the typed settings (ranges, defaults, help)
every user value is checked against. ``core.defaults``: the defaults a user sees in more
than one place.
"""

from core.params import Param, Schema
from core.registry import Registry, plain_text, unknown_name

__all__ = ["Param", "Registry", "Schema", "plain_text", "unknown_name"]
