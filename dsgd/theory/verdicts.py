"""Verdict strings computed from the chapter's numbers, so the text never asserts by hand.

Each function takes the measured quantities, applies a stated rule, and returns a short
sentence that the chapter glues under its "Verdict" heading.
"""
from __future__ import annotations

import math


def compare_word(ci: tuple[float, float, float]) -> str:
    """'smaller' / 'larger' when the interval of ``a - b`` excludes 0, else 'no different'."""
    _, lo, hi = ci
    if hi < 0:
        return "smaller"
    if lo > 0:
        return "larger"
    return "not distinguishable"


def lemma42(binary_rate: float, multiclass_rate: float, counterexample: dict | None,
            separable_zero_error: bool, separable_rate: float = float("nan"),
            separable_tried: int = 0, counterexample_separable: bool | None = None) -> str:
    """Lemma 4.2 in three parts: under the paper's assumption (separable data), what the
    proof's per-example step gets wrong, and what happens once the assumption is dropped."""
    parts = []
    if separable_tried and separable_rate == 0:
        parts.append("under the paper's assumption (linearly separable data) it holds for any number "
                     f"of classes: at {separable_tried} random parameters with errors on the separable "
                     "three-class problem no combination of the misclassified examples' gradients "
                     "vanished, as the separating direction lowers every example's loss at once")
    elif separable_tried:
        parts.append(f"on separable data a stationary point with errors was found at a rate of "
                     f"{separable_rate:.2f}, against the separability argument")
    parts.append("the proof's per-example step (the gradient vanishes only if every example is "
                 "fitted) is wrong for a sum of gradients, so the conclusion rests on separability, "
                 "not on that step")
    if counterexample is not None:
        n = len(counterexample["y"])
        sep = ("" if counterexample_separable is None else
               " (not linearly separable)" if not counterexample_separable else " (separable!)")
        parts.append(f"without the assumption it fails for three or more classes: a {n}-point "
                     f"dataset{sep} has a stationary point of L_W that misclassifies all {n} points")
    else:
        parts.append("no counterexample was found for three or more classes")
    if binary_rate == 0:
        parts.append("for two classes it holds even without separability: L_W has no stationary "
                     "point with errors at all")
    else:
        parts.append(f"a binary stationary point with errors was found at a rate of {binary_rate:.2f}")
    if separable_zero_error:
        parts.append("on separable data gradient descent on L_W reached zero training error, "
                     "stopping right at the decision boundary")
    parts.append("for fine-tuning the non-separable case is the one that matters (on the "
                 "majority-class plateau the features do not separate the classes), but the "
                 "book's tasks have two classes, where the lemma holds")
    return "; ".join(parts) + "."


def lemma43(errors_end: int, n: int, grad_drop: float) -> str:
    if errors_end > 0:
        return (f"holds: gradient descent on L_C kept {errors_end} of {n} points misclassified while "
                f"its gradient shrank by a factor {grad_drop:.0f}; but it is true almost trivially, "
                "since L_C has no finite stationary point unless C is empty")
    return "not illustrated: the example reached zero training error."


def theorem45(bound_over_measured: float, eps_le_eps_sgd: bool,
              same_lr: list[tuple[str, str]], matched_lr: list[tuple[str, str]]) -> str:
    """``same_lr``/``matched_lr``: (setting label, compare_word of DSGD - SGD)."""
    s = ("holds but is vacuous: eps <= eps' follows from rho_t <= 1 alone, and both bounds exceed the "
         f"measured divergence by a factor of at least {bound_over_measured:,.0f}" if eps_le_eps_sgd
         else "fails: eps > eps' somewhere")
    def listing(pairs):
        return ", ".join(f"{w} at {lab}" for lab, w in pairs)

    words = {w for _, w in same_lr}
    if len(words) > 1:
        s += ("; whether DSGD's measured divergence is smaller than SGD's depends on the setting "
              f"(compared with SGD at the same learning rate it was {listing(same_lr)})")
    else:
        s += (f"; compared with SGD at the same learning rate DSGD's measured divergence was "
              f"{words.pop()} in every setting tried")
    if matched_lr:
        s += f"; compared with SGD at DSGD's mean effective step it was {listing(matched_lr)}"
    return s + "."


def theorem46(dec_fixed: float, dec_full: float, dec_reeval: float, runs_all_t: float,
              bound_violations: int) -> str:
    """``dec_*``: worst share of decreasing steps (among steps meeting the conditions)."""
    s = ("holds for one step of the batch's L_W with W held fixed (a descent-lemma step: "
         f"{dec_fixed:.0%} of qualifying steps decrease, {bound_violations} violations of the "
         "guaranteed decrease)" if dec_fixed == 1.0 and bound_violations == 0
         else f"fails even for the batch's fixed-W loss ({dec_fixed:.0%} of qualifying steps decrease)")
    s += (f"; for the loss a reader would monitor it does not: as few as {dec_full:.0%} (full data, W "
          f"fixed at t) and {dec_reeval:.0%} (W re-decided) of qualifying steps decrease")
    if runs_all_t == 0:
        s += "; in no run did all hypotheses hold at every step after the first"
    else:
        s += (f"; all hypotheses held at every step after the first in at most {runs_all_t:.0%} "
              "of the runs of a setting")
    return s + "."


def cancellation(gd_max_dist: float, max_dist: float, final_over_max: float,
                 errors_start: int, errors_end: int, errors_min: int) -> str:
    s = (f"GD does not move (largest displacement {gd_max_dist:.1e}); DSGD leaves the point "
         f"(up to {max_dist:.2f} away)")
    if final_over_max < 0.05:
        s += " but returns to it as gamma_t approaches tau = 1"
    else:
        s += f" and ends {final_over_max:.0%} of that distance away"
    if errors_end >= errors_start:
        s += (f"; training errors went from {errors_start} to {errors_end} (fewest along the way: "
              f"{errors_min}), so the escape bought nothing lasting")
    else:
        s += f"; training errors went from {errors_start} to {errors_end}"
    return s + ". The cancellation point is the minimum of L: leaving it raises the training loss."


def collapse(n_predicted_classes: int, gd_max_dist: float, min_eig: float) -> str:
    if n_predicted_classes == 1 and min_eig > 0 and gd_max_dist < 1e-6:
        return ("not stuck: the unique minimiser of cross-entropy predicts one class for every "
                "training example, and gradient descent from every start converged to it (largest "
                f"distance {gd_max_dist:.1e}); the collapsed classifier is the optimum here")
    if n_predicted_classes == 1:
        return "the minimiser predicts one class, but convergence to it was not confirmed"
    return f"the minimiser predicts {n_predicted_classes} classes: no collapse at this setting"


def is_finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def change_word(before: float, after: float, rel: float = 0.05) -> str:
    """'fell' / 'rose' / 'stayed about the same' (within ``rel``) from ``before`` to ``after``."""
    if after < before * (1 - rel):
        return "fell"
    if after > before * (1 + rel):
        return "rose"
    return "stayed about the same"
