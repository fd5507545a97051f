"""Step time of the fine-tuning methods on the offline MiniLM, interleaved.

DSGD claims to cost what plain fine-tuning (FFT) costs: one forward and one backward pass
per step, the per-example weights being a few element-wise operations on the logits.
PCGrad needs a second backward pass (``pcgrad-head``, ``balanced`` and ``dsgd-balanced``
are one-pass alternatives). This script is the command-line front end of
:func:`dsgd.cost.measure_step_times` (the NLP chapter calls the same function): it times
the *full optimizer step* of the training engine (forward, backward, statistics, clipping,
AdamW, LR schedule) for each method on the same fixed batch, interleaving the methods
round by round (rotating their order) so that slow drifts of a shared machine hit all of
them alike, and prints median seconds per step and the ratios to the first method — for
wall time and for the process's CPU time (``time.process_time``, which on a shared
machine does not count the time spent waiting for a core).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_time.py --threads 1 --rounds 30
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_time.py \
        --methods fft,fft-nobc,dsgd,focal,lnsr,noisytune,pcgrad,swa,cwgnc
    # the one-backward-pass candidates next to PCGrad, and a method with settings
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/step_time.py \
        --methods fft,dsgd,pcgrad,pcgrad-head,balanced,dsgd-balanced \
        --spec pcgrad-paper pcgrad '{"variant": "paper"}'

Every registered method name is accepted by ``--methods``; ``--spec LABEL METHOD JSON``
(repeatable) adds a method with its ``method_kwargs`` under its own label.

The batch is 8 premise/hypothesis pairs of the offline ``epistemic_reasoning`` task (both
labels present; a built-in set of sentence pairs if that task's data are not prepared).
"""
from __future__ import annotations

import argparse
import json

from dsgd.config import RunConfig
from dsgd.cost import measure_step_times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--methods", default="fft,dsgd,pcgrad",
                    help="comma-separated registered method names (the first is the reference)")
    ap.add_argument("--spec", nargs=3, action="append", default=[], metavar=("LABEL", "METHOD", "JSON"),
                    help="also time METHOD with method_kwargs JSON under LABEL (repeatable)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", default="epistemic_reasoning")
    ap.add_argument("--json", default=None, help="also write the raw timings here")
    args = ap.parse_args()

    cfg = RunConfig(task=args.task, model=args.model, batch_size=args.batch_size,
                    max_length=args.max_length, train_size=args.batch_size * 8, eval_size=8,
                    max_grad_norm=1.0)
    methods: list = [m for m in args.methods.split(",") if m]
    methods += [(label, method, json.loads(kw)) for label, method, kw in args.spec]
    df = measure_step_times(methods, cfg, rounds=args.rounds, warmup=args.warmup,
                            threads=args.threads)
    a = df.attrs
    print(f"model={args.model} batch {a['batch_shape']} from {a['source']}, {a['real_tokens']} real tokens; "
          f"threads={a['threads']} rounds={args.rounds} (+{args.warmup} warm-up)")
    print("share of timed steps whose batch had both correct and wrong examples: "
          + ", ".join(f"{r.label} {r.mixed_share:.2f}" for r in df.itertuples()))
    cols = ["label", "median_s", "min_s", "ratio", "paired_ratio", "q1", "q3", "cpu_median_s", "cpu_ratio"]
    print(f"ratios to {a['reference']} (ratio = of medians; paired = median of per-round ratios [q1, q3]):")
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "attrs": {k: v for k, v in a.items()},
                       "rows": df.to_dict(orient="records")}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
