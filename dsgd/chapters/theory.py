"""Glue of the theory chapter (notebooks/theory.ipynb): summaries over its Theorem-4.6
settings. The checks themselves are the library's :mod:`dsgd.theory`."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence


def worst_share(summaries: Sequence[dict[str, Any]], key: str, min_qualifying: int = 20) -> float:
    """The smallest ``summaries[i][key]`` over the settings with at least
    ``min_qualifying`` steps meeting every condition (``n_all``); NaN when none has
    that many (a share of very few steps is not quoted)."""
    values = [s[key] for s in summaries if s["n_all"] >= min_qualifying]
    return min(values) if values else math.nan


def extreme(summaries: Sequence[dict[str, Any]], names: Sequence[str], key: str,
            pick: Callable[..., Any] = min) -> tuple[Any, str]:
    """``(value, setting name)`` of the setting whose ``key`` is the ``pick`` (min or max)
    over all settings; the first such setting on a tie."""
    i = pick(range(len(summaries)), key=lambda j: summaries[j][key])
    return summaries[i][key], names[i]


# ------------------------------------------------------------------ findings page
def chapter_findings(v: dict[str, Any]) -> list[dict[str, Any]]:
    """The theory chapter's rows of the findings page, from its own results values ``v``.

    Verdicts: a formal statement that the numbers satisfy is "supported" (its caveats go
    into the measured text); the escape from cancellation counts as a benefit only if the
    run ends with fewer training errors than it started with.
    """
    setting = "linear softmax model in float64 (dsgd.theory), synthetic data"
    rows = []
    sep_ok = v.get("l42_sep_rate") == 0 and int(v.get("l42_sep_tried") or 0) > 0
    rows.append(dict(key="lemma42", source="paper",
                     claim="Lemma 4.2: a stationary point of the misclassified examples' loss L_W has no training errors.",
                     measured=str(v.get("l42_verdict", "")), setting=setting,
                     verdict="supported" if sep_ok else "contradicted", section="lemma-4-2-does-minimising-l-w-give-zero-training-error"))
    for key, name, claim in (("l43", "Lemma 4.3", "Lemma 4.3: minimising the correct examples' loss L_C alone can leave errors."),
                             ("t45", "Theorem 4.5", "Theorem 4.5: DSGD's seed-stability bound is tighter than SGD's."),
                             ("t46", "Theorem 4.6", "Theorem 4.6: under its conditions a DSGD step decreases L_W.")):
        text = str(v.get(f"{key}_verdict", ""))
        rows.append(dict(key=key, source="paper", claim=claim, measured=text, setting=setting,
                         verdict="supported" if text.startswith("holds") else
                         "not testable at this scale" if not text else "contradicted", section=""))
    start, end = v.get("gc_n_wrong"), v.get("gc_tau1_errors_end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        rows.append(dict(key="cancellation", source="paper",
                         claim="DSGD escapes gradient cancellation where gradient descent is stuck, to the model's benefit.",
                         measured=str(v.get("gc_verdict", "")), setting=setting,
                         verdict="supported" if end < start else "contradicted", section=""))
    return rows


# ------------------------------------------------------------------ what we found
_CMP = {"smaller": "lower than", "larger": "higher than", "not distinguishable": "no different from"}


def _count(share: Any, n: Any) -> int | None:
    """The count behind a share of ``n`` trials (None when either is not a number)."""
    if isinstance(share, (int, float)) and isinstance(n, (int, float)) and math.isfinite(share) and n:
        return int(round(float(share) * int(n)))
    return None


def _rate(share: Any, n: Any) -> str:
    from dsgd import stats

    k = _count(share, n)
    return "not measured" if k is None else stats.format_rate(stats.rate_ci(k, int(n)))


def what_we_found(v: dict[str, Any], summaries: dict[str, dict[str, Any]] | None = None,
                  min_qualifying: int = 20, n_test: int | None = None) -> dict[str, str]:
    """The closing bullets of the theory chapter from its own results values ``v`` (what
    the sections glued) and the Theorem-4.6 ``summaries`` per setting: each statement with
    its number, and an exact interval where the number is a share of random trials
    (stationary points found among random parameters, decreasing steps among qualifying
    steps, correct predictions among ``n_test`` fresh draws). Verdict words are chosen by
    comparing the numbers."""
    out: dict[str, str] = {}
    # Lemma 4.2: a stationary point of L_W with errors, by number of classes and separability
    n = v.get("l42_lp_thetas")
    k = {K: _count(v.get(f"l42_lp_rate_K{K}"), n) for K in (2, 3, 4)}
    ks = _count(v.get("l42_sep_rate"), v.get("l42_sep_tried"))
    holds_sep = ks == 0
    beyond = [K for K in (3, 4) if k[K]]
    out["wwf_l42"] = (
        f"{'Holds' if holds_sep else 'Fails'} under the paper's assumption: on the separable "
        f"three-class problem a vanishing combination of the misclassified examples' gradients was found at "
        f"{_rate(v.get('l42_sep_rate'), v.get('l42_sep_tried'))} random parameters with errors. Without "
        f"separability it {'fails beyond two classes' if beyond and not k[2] else 'fails' if k[2] else 'held in every trial'}: "
        f"such a point exists at {_rate(v.get('l42_lp_rate_K2'), n)} random parameters with two classes, "
        f"{_rate(v.get('l42_lp_rate_K3'), n)} with three and {_rate(v.get('l42_lp_rate_K4'), n)} with four.")
    # Lemma 4.3
    e, g0, g1 = v.get("l43_errors_end"), v.get("l43_grad_start"), v.get("l43_grad_end")
    if isinstance(e, int) and isinstance(g0, float) and isinstance(g1, float):
        out["wwf_l43"] = (f"{'Holds' if e > 0 else 'Not illustrated'}: gradient descent on L_C kept "
                          f"{e} of 3 points misclassified while its gradient norm fell from {g0:.3f} to {g1:.1e} "
                          f"(one deterministic run); gradient descent on the whole loss from the same start ended "
                          f"with {v.get('l43_L_errors_end')} errors.")
    else:
        out["wwf_l43"] = "Not measured in this profile."
    # Theorem 4.5
    parts = []
    for tag in ("lo", "hi"):
        word, eta = v.get(f"t45_word_sgd_{tag}"), v.get(f"t45_eta_{tag}")
        d, ci = v.get(f"t45_diff_sgd_{tag}"), v.get(f"t45_diff_sgd_{tag}_ci")
        if word in _CMP and isinstance(d, float):
            parts.append(f"{_CMP[word]} SGD's at η = {eta:g} ({d:+.4f}, 95 % CI {ci})")
    ratio = v.get("t45_ratio_min")
    out["wwf_t45"] = (
        f"The bound exceeds the measured seed divergence by a factor of at least "
        f"{ratio:,.0f}" + (", so it says nothing about measured stability; " if ratio >= 10 else "; ")
        if isinstance(ratio, (int, float))
        else "The bound was not compared with a measurement; ") + (
        f"at the same learning rate DSGD's measured divergence was {' and '.join(parts)}, paired over "
        f"{v.get('t45_pairs')} seed pairs." if parts else "DSGD and SGD were not compared.")
    # Theorem 4.6: the worst setting with enough qualifying steps
    worst = None
    for name, s in (summaries or {}).items():
        if s.get("n_all", 0) >= min_qualifying and (worst is None or s["dec_reevaluated_if_all"] < worst[1]["dec_reevaluated_if_all"]):
            worst = (name, s)
    if worst is not None:
        name, s = worst
        fx = v.get("t46_dec_fixed_min")
        fixed = f"{fx:.0%}" if isinstance(fx, float) else str(fx)
        first = (("Holds for the batch's L_W with W held fixed (it decreased on every qualifying step, as the "
                  "descent lemma guarantees)" if fx == 1.0 else
                  f"Holds for the batch's L_W with W held fixed (it decreased on at least {fixed} of the "
                  "qualifying steps)")
                 if str(v.get("t46_verdict", "")).startswith("holds") else
                 f"Fails even for the batch's L_W with W held fixed (it decreased on {fixed} of the qualifying "
                 f"steps at worst)")
        out["wwf_t46"] = (
            f"{first}; for the L_W a monitor computes, with W re-decided, it decreased on "
            f"{_rate(s['dec_reevaluated_if_all'], s['n_all'])} of the steps that met every hypothesis in "
            f"the setting {name}; " + (
                "in no run did all hypotheses hold at every step after the first."
                if not v.get("t46_runs_all_t_max") else
                f"all hypotheses held at every step after the first in at most "
                f"{v.get('t46_runs_all_t_max'):.0%} of a setting's runs."))
    else:
        out["wwf_t46"] = (f"No setting had {min_qualifying} or more steps meeting every "
                          "hypothesis, so no share of decreasing steps is quoted.")
    # Gradient cancellation
    start, end = v.get("gc_n_wrong"), v.get("gc_tau1_errors_end")
    if isinstance(start, int) and isinstance(end, int):
        how = "fewer than" if end < start else "more than" if end > start else "as many as"
        out["wwf_gc"] = (f"DSGD (τ = 1) left the cancellation point, up to "
                         f"{v.get('gc_tau1_max_dist', float('nan')):.2f} away, and ended {v.get('gc_tau1_final_dist', float('nan')):.3f} "
                         f"from it with {end} training errors, {how} the {start} it started with (one "
                         "deterministic run).")
    else:
        out["wwf_gc"] = "Not measured in this profile."
    # Collapse on an imbalanced problem
    acc, maj, c = v.get("col_opt_test_acc"), v.get("col_majority"), v.get("col_opt_classes")
    if isinstance(acc, float) and isinstance(maj, float) and n_test:
        from dsgd import stats

        r = stats.rate_ci(int(round(acc * n_test)), int(n_test))
        rel = "no better than" if acc <= maj + 1e-12 else "above"
        bacc, far = v.get("col_dsgd05_bacc"), v.get("col_gd_max_dist")
        converged = isinstance(far, float) and far < 1e-6
        head = ("the optimum, not a trap" if c == 1 and converged else
                "what the minimiser predicts" if c == 1 else "absent here")
        out["wwf_col"] = (f"On the imbalanced problem (class shares {v.get('col_probs')}) collapse is {head}: the "
                          f"unique minimiser of cross-entropy predicts {'one class' if c == 1 else f'{c} classes'} on "
                          f"the training set" + (f", gradient descent from every start converged to it (largest "
                                                 f"distance {far:.1e})" if converged else "")
                          + f", and on {n_test:,} fresh draws its accuracy, {acc:.3f} (95 % CI {r.lo:.3f}–"
                          f"{r.hi:.3f}), is {rel} the majority share {maj:.3f}."
                          + (f" DSGD with τ = 0.5 ended with balanced accuracy {bacc:.3f} (0.5: one class)."
                             if isinstance(bacc, float) else ""))
    else:
        out["wwf_col"] = "Not measured in this profile."
    return out
