"""Workloads: what a search prunes, and everything it takes to have one trained.

``base`` (the ``Workload`` type and the ``WORKLOADS`` registry), ``builtin`` (the
registered workloads: architectures, training recipes, the cache, committed checkpoints
under ``checkpoints/``), ``models`` (the networks), ``data`` (data sources and their fixed
splits), ``evaluation`` (accuracy, BatchNorm re-estimation, fine-tuning), ``recovery``
(masked recovery training of a pruned network) and ``safe_load`` (loading user files
without unpickling code).

Nothing here imports the environment or the accuracy proxies. Importing this package
imports nothing; ``envs.workloads.builtin`` registers the workloads.
"""
