"""Every default a user sees in more than one place, stated once.

Plain values with no imports, so that the CLI can show them (``--help``) before it
imports torch, and ``TaskSpec``, ``SearchConfig``, ``make_env`` and ``LayerPruneEnv`` take
them from here rather than restating them.
"""

from __future__ import annotations

#: The embedded default workload (the bundled digits; ``make search`` runs it).
MODEL = "digits-cnn"
#: The default pruning scheme.
SCHEME = "balanced"
#: The default hardware preset.
HARDWARE = "accel-kang-16"
#: The default budget: the target cost ratio against the dense network.
BUDGET = 0.5
#: The default search agent (AMC's DDPG recipe).
AGENT = "ddpg"
#: The default evaluated episodes of a search.
EPISODES = 300
#: Peak learning rate of recovery (``--finetune-epochs``, ``hwprune finetune``): a tenth of
#: fashion-vgg's training peak; see ``envs.workloads.recovery.RecoveryRecipe``.
RECOVERY_LR = 0.005
