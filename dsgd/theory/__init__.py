"""Numerical checks of the paper's Section 4 on a linear softmax classifier (float64 numpy).

Self-contained on purpose (no torch, its own schedules) so that it can serve as an
independent check of the library. Modules:

* :mod:`~dsgd.theory.model` — the model, per-example and grouped losses, exact gradients,
  Hessians, the constants ``H`` (Lipschitz) and ``M`` (smoothness); tie-breaking rule.
* :mod:`~dsgd.theory.data` — Gaussian-mixture data: separable or not, any K, imbalanced.
* :mod:`~dsgd.theory.updates` — DSGD / SGD steps and trajectories, any schedule.
* :mod:`~dsgd.theory.optimum` — exact (Newton) minimisers of cross-entropy.
* :mod:`~dsgd.theory.lemmas` — Lemmas 4.2 and 4.3: stationary points of ``L_W``, ``L_C``.
* :mod:`~dsgd.theory.stability` — Theorem 4.5: bounds vs measured seed divergence.
* :mod:`~dsgd.theory.convergence` — Theorem 4.6: its conditions and which ``L_W`` decreases.
* :mod:`~dsgd.theory.cancellation` — gradient cancellation and DSGD's escape from it.
* :mod:`~dsgd.theory.collapse` — collapse on an imbalanced problem.
* :mod:`~dsgd.theory.stats`, :mod:`~dsgd.theory.verdicts`, :mod:`~dsgd.theory.plots`.
"""
from dsgd.theory.model import (  # noqa: F401
    augment, example_grads, example_losses, group_grad, group_loss, init_params,
    lipschitz_constant, loss_C, loss_W, misclassified, partition, predict, smoothness_constant,
    split_grads,
)
from dsgd.theory.updates import dsgd_step, gamma_value, run, run_sgd  # noqa: F401
