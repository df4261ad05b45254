"""Accuracy proxies: how a search scores a set of keep-masks on a workload.

``base`` (the ``AccuracyProxy`` protocol and the ``PROXIES`` registry), ``builtin`` (the
registered proxies and their parameters), ``folding`` (BatchNorm folded into the
convolutions), ``quantized`` (the int8 scoring path) and ``headfit`` (re-fitting the
classifier head of a masked network).

Proxies stand on ``envs.workloads``; they never import the environment. Importing this
package imports nothing; ``envs.proxies.builtin`` registers the proxies.
"""
