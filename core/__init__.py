"""The ground floor every other package stands on: pieces with no hwprune imports.

``core.registry``: the name -> factory ``Registry`` behind workloads, schemes, hardware
presets, proxies and agents, with its did-you-mean errors.
"""

from core.registry import Registry, plain_text, unknown_name

__all__ = ["Registry", "plain_text", "unknown_name"]
