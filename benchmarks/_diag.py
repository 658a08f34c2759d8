"""Shared by the per-seed diagnosis scripts (``surrogate_seeds.py``, ``video_oracle.py``)."""

from __future__ import annotations

import time

import torch


def per_class_errors(model, clean, num_classes: int) -> list[int]:
    """How many samples of each class of the clean set ``clean`` the model misclassifies."""
    x = torch.stack([clean[i][0] for i in range(len(clean))])
    y = torch.tensor([int(clean[i][1]) for i in range(len(clean))])
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(c.to(device)).argmax(1).cpu() for c in x.split(1000)])
    model.train(was)
    return [int(((pred != y) & (y == c)).sum()) for c in range(num_classes)]


def evaluated_history(history: list[dict]) -> list[dict]:
    """The history rows that carry test metrics (``eval_every``), floats rounded to 3 digits."""
    return [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in history if "acc" in r]


def purify_and_diagnose(defense, run, adapter) -> dict:
    """Run ``defense`` on ``run`` (a task's BackdoorRun) and return what both scripts record: the result,
    the metrics after (with the per-class clean errors), the seconds of purification and the history."""
    t0 = time.perf_counter()
    res = defense.purify(run.model, run.val, adapter)
    seconds = time.perf_counter() - t0
    after = adapter.evaluate(res.model, run.eval_data)
    after["per_class_errors"] = per_class_errors(res.model, run.eval_data.clean, run.num_classes)
    return {"result": res, "after": after, "seconds": seconds, "history": evaluated_history(res.history)}
