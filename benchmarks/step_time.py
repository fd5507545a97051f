"""Step time of plain fine-tuning, DSGD and PCGrad on the offline MiniLM, interleaved.

DSGD claims to cost what plain fine-tuning (FFT) costs: one forward and one backward pass
per step, the per-example weights being a few element-wise operations on the logits.
PCGrad needs a second backward pass. This script measures the *full optimizer step* of
the training engine (``dsgd.engine.optimizer_step``: forward, backward, statistics,
clipping, AdamW, LR schedule) for each method on the same fixed batch, interleaving the
methods round by round (rotating their order) so that slow drifts of a shared machine hit
all of them alike, and prints median seconds per step and the ratios to FFT — for wall
time and for the process's CPU time (``time.process_time``, which on a shared machine does
not count the time spent waiting for a core).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_time.py --threads 1 --rounds 30

The batch is 8 premise/hypothesis pairs of the offline ``epistemic_reasoning`` task
(real lengths; a built-in set of sentence pairs if that task's data are not prepared).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from dsgd.config import RunConfig
from dsgd.engine import optimizer_step, seed_everything
from dsgd.methods import get_method
from dsgd.optim import linear_warmup_decay

FALLBACK_PAIRS = [
    ("A man is playing a guitar on a stage in front of a large crowd.", "Someone is performing music."),
    ("The committee postponed the vote until the budget report was finished.", "The vote happened before the report."),
    ("Three children are building a sandcastle near the water.", "Kids are at the beach."),
    ("She believes that the train leaves at noon.", "The train leaves at noon."),
    ("The museum was closed for renovations during the whole summer.", "Visitors could see the exhibits in July."),
    ("A dog is running through a field of tall grass after a ball.", "An animal is outside."),
    ("He suspects that his neighbour borrowed the ladder without asking.", "The neighbour borrowed the ladder."),
    ("The researchers reported that the new drug reduced symptoms in most patients.", "The drug had no effect."),
]


def fixed_batch(tokenizer, batch_size: int, max_length: int) -> tuple[dict[str, torch.Tensor], str]:
    from dsgd.data import collate

    try:
        from dsgd.data import load_task

        data = load_task("epistemic_reasoning", tokenizer, max_length=max_length,
                         train_size=batch_size, eval_size=8, split_seed=0)
        rows, source = data.train[:batch_size], "epistemic_reasoning"
    except Exception as e:  # data not prepared: hand-written pairs of similar length
        enc = tokenizer([a for a, _ in FALLBACK_PAIRS], [b for _, b in FALLBACK_PAIRS],
                        truncation=True, max_length=max_length)
        rows = [{**{k: v[i] for k, v in enc.items()}, "labels": i % 2} for i in range(len(FALLBACK_PAIRS))]
        rows, source = (rows * (batch_size // len(rows) + 1))[:batch_size], f"fallback ({type(e).__name__})"
    return collate(rows, pad_token_id=tokenizer.pad_token_id or 0), source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--methods", default="fft,dsgd,pcgrad")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--json", default=None, help="also write the raw timings here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    from dsgd.models import load_model

    seed_everything(0)
    base, tok = load_model(args.model, 2, seed=0)
    batch, source = fixed_batch(tok, args.batch_size, args.max_length)
    T = 10**6  # a long horizon: the LR stays ~constant during the benchmark
    runs = {}
    for name in methods:
        cfg = RunConfig(task="epistemic_reasoning", model=args.model, method=name, lr=1e-5,
                        warmup_ratio=0.0, max_grad_norm=1.0)
        method = get_method(name)
        model = method.prepare_model(copy.deepcopy(base), cfg, total_steps=T)
        model.train()
        opt = method.configure_optimizer(model, cfg)
        # Learning rate 0: every operation of the step still runs, but the weights stay put,
        # so the fixed batch keeps its mix of correct and wrong examples and each round does
        # the same work (PCGrad needs both groups non-empty for its second backward pass).
        for g in opt.param_groups:
            g["lr"] = 0.0
        runs[name] = dict(cfg=cfg, method=method, model=model, opt=opt,
                          sched=linear_warmup_decay(opt, T, 0.0), times=[], cpu=[], mixed=[], t=0)
    del base

    def one_step(name: str) -> tuple[float, float]:
        r = runs[name]
        c0, t0 = time.process_time(), time.perf_counter()
        stats = optimizer_step(r["model"], r["method"], r["opt"], r["sched"], [batch], t=r["t"],
                               T=T, gamma=0.5, epoch=0, cfg=r["cfg"], num_labels=2)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        r["t"] += 1
        r["mixed"].append(0.0 < stats["correct_share"] < 1.0)
        return dt, dc

    n_tokens = int(batch["attention_mask"].sum())
    print(f"model={args.model} batch={args.batch_size} pairs from {source}, "
          f"padded length {batch['input_ids'].shape[1]}, {n_tokens} real tokens; "
          f"threads={torch.get_num_threads()} rounds={args.rounds} (+{args.warmup} warm-up)")
    for _ in range(args.warmup):
        for name in methods:
            one_step(name)
    for k in range(args.rounds):
        order = methods[k % len(methods):] + methods[:k % len(methods)]  # rotate
        for name in order:
            dt, dc = one_step(name)
            runs[name]["times"].append(dt)
            runs[name]["cpu"].append(dc)

    mixed = {n: sum(r["mixed"][args.warmup:]) / args.rounds for n, r in runs.items()}
    print("share of timed steps whose batch had both correct and wrong examples: "
          + ", ".join(f"{n} {v:.2f}" for n, v in mixed.items()))
    ref = methods[0]
    out = {"args": vars(args), "source": source, "mixed_share": mixed, "wall": {}, "cpu": {}}
    for clock, key in (("wall", "times"), ("cpu", "cpu")):
        med = {n: statistics.median(r[key]) for n, r in runs.items()}
        print(f"[{clock} time] {'method':<8} {'median s/step':>14} {'min':>8} {'ratio to ' + ref:>14} "
              f"{'paired ratio [q1, q3]':>24}")
        for n in methods:
            paired = sorted(a / b for a, b in zip(runs[n][key], runs[ref][key]))
            q1, q2, q3 = statistics.quantiles(paired, n=4)
            out[clock][n] = {"median_s": med[n], "ratio_of_medians": med[n] / med[ref],
                             "paired_median": q2, "q1": q1, "q3": q3, "times": runs[n][key]}
            print(f"{'':11}{n:<8} {med[n]:>14.4f} {min(runs[n][key]):>8.4f} {med[n] / med[ref]:>14.3f} "
                  f"{q2:>10.3f} [{q1:.3f}, {q3:.3f}]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
