"""Plumbing shared by the baseline defenses: setup/teardown of a working copy, clean-data metrics,
fine-tuning loops, layer discovery by trace, feature hooks, and input perturbations.

Everything here sees only the model, the clean validation ``data`` and the task adapter.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..adapters import model_device
from ..data import BatchSource, iterate_batches
from ..errors import UnsupportedError
from ..masks import _HANDLERS, LayerHandler, NeuronMasks, _bcast, _trace

__all__ = [
    "Setup", "finish", "clean_metric", "mean_loss", "finetune", "conv_layers", "feature_layers", "group_layers",
    "FeatureHooks", "InputPerturbation", "NoisyMasks", "project_l2", "prune_by_threshold",
]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
         nn.Mish, nn.PReLU, nn.SELU, nn.CELU, nn.Softplus)


class Setup:
    """A deep copy of ``model`` on the device, a seeded generator, a batch source over ``data`` and one
    example input (for tracing)."""

    def __init__(self, model: nn.Module, data: Any, adapter: Any, *, batch_size: int, seed: int,
                 device: str | None = None):
        self.device = torch.device(device) if device else model_device(model)
        self.work = copy.deepcopy(model).to(self.device)
        for p in self.work.parameters():
            p.requires_grad_(True)
        self.gen = torch.Generator().manual_seed(seed)
        self.source = BatchSource(data, batch_size, collate=adapter.collate, to_device=adapter.to_device,
                                  device=self.device, generator=self.gen)
        self.example = adapter.example_input(
            adapter.to_device(adapter.collate([data[0], data[min(1, len(data) - 1)]]), self.device))


def finish(purified: nn.Module, model: nn.Module) -> nn.Module:
    """Remove stray hooks' effects are the caller's job; here: copy requires_grad flags and the training
    flag of the input model onto the purified one."""
    for p, q in zip(purified.parameters(), model.parameters()):
        p.requires_grad_(q.requires_grad)
    purified.train(model.training)
    return purified


def clean_metric(adapter: Any, model: nn.Module, data: Any) -> float:
    """The task's clean metric on ``data`` (``acc`` if present, else the first value ``evaluate`` gives)."""
    was = model.training
    try:
        m = adapter.evaluate(model, data)
    finally:
        model.train(was)
    for k in ("acc", "accuracy", "mAP", "map", "bleu"):
        if k in m:
            return float(m[k])
    return float(next(iter(m.values())))


def _batch_len(x: Any) -> int:
    if isinstance(x, Tensor):
        return int(x.shape[0]) if x.ndim else 1
    if isinstance(x, dict):
        return _batch_len(next(iter(x.values())))
    if isinstance(x, (tuple, list)) and x:
        return _batch_len(x[0])
    return 1


@torch.no_grad()
def mean_loss(adapter: Any, model: nn.Module, data: Any, device, batch_size: int = 256) -> float:
    """Mean of ``adapter.loss`` over every sample of ``data`` once (model in eval mode)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        for batch in iterate_batches(data, batch_size, adapter.collate, adapter.to_device, device):
            k = _batch_len(adapter.example_input(batch))
            total += float(adapter.loss(model, batch)) * k
            n += k
    finally:
        model.train(was)
    return total / max(n, 1)


def cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int) -> float:
    lr = 0.5 * base * (1 + math.cos(math.pi * step / max(total, 1)))
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def finetune(
    work: nn.Module, source: BatchSource, adapter: Any, *, epochs: int, lr: float, momentum: float = 0.9,
    weight_decay: float = 5e-4, params: Sequence[Tensor] | None = None,
    extra_loss: Callable[[Any, Tensor], Tensor] | None = None, history: list | None = None, stage: int = 0,
    after_step: Callable[[], None] | None = None, cosine: bool = True,
    epoch_lr: Callable[[int], float] | None = None,
) -> None:
    """SGD fine-tuning on clean batches (train mode, cosine decay to 0 over all steps, or ``epoch_lr(epoch)``
    per epoch when given). ``extra_loss(batch, loss)`` adds a term (e.g. attention distillation) after the
    task loss."""
    params = [p for p in (params if params is not None else work.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    spe = source.steps_per_epoch
    total, step = epochs * spe, 0
    work.train()
    for epoch in range(epochs):
        s, e = 0.0, 0.0
        cur = lr
        if epoch_lr is not None:
            cur = epoch_lr(epoch)
            for g in opt.param_groups:
                g["lr"] = cur
        for _ in range(spe):
            if cosine and epoch_lr is None:
                cur = cosine_lr(opt, lr, step, total)
            batch = source.next()
            loss = adapter.loss(work, batch)
            obj = loss
            if extra_loss is not None:
                extra = extra_loss(batch, loss)
                obj = loss + extra
                e += float(extra.detach())
            opt.zero_grad(set_to_none=True)
            obj.backward()
            opt.step()
            if after_step is not None:
                after_step()
            s += float(loss.detach())
            step += 1
        if history is not None:
            row = {"stage": float(stage), "epoch": float(epoch + 1), "loss": s / spe, "lr": cur}
            if extra_loss is not None:
                row["extra_loss"] = e / spe
            history.append(row)


def prune_by_threshold(soft: dict[str, Tensor], threshold: float, metric: Callable[[dict[str, Tensor]], float] | None = None,
                       max_drop: float | None = None) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Hard 0/1 masks from soft ones: neurons under ``threshold`` are pruned (the ANP/RNP rule). With
    ``max_drop`` (points of the clean metric, measured by ``metric(hard_masks)`` on the defender's clean
    validation data), only the lowest-valued of those neurons are pruned, as many as keep the metric within
    ``max_drop`` of the unpruned model's (binary search over the count, the metric taken as monotone in it).
    Returns the masks and ``{"pruned", "candidates", "reference", "metric"}``."""
    names = list(soft)
    flat = torch.cat([soft[n].flatten().float().cpu() for n in names])
    sizes = [soft[n].numel() for n in names]
    order = torch.argsort(flat)
    candidates = int((flat < threshold).sum())

    def hard(k: int) -> dict[str, Tensor]:
        keep = torch.ones_like(flat)
        keep[order[:k]] = 0.0
        return {n: part.view_as(soft[n]).to(soft[n].device, soft[n].dtype)
                for n, part in zip(names, torch.split(keep, sizes))}

    info: dict[str, float] = {"candidates": float(candidates)}
    k = candidates
    if max_drop is not None and candidates:
        if metric is None:
            raise ValueError("max_drop needs a clean-data metric")
        seen: dict[int, float] = {}

        def at(count: int) -> float:  # each count is evaluated on the validation data once
            if count not in seen:
                seen[count] = metric(hard(count))
            return seen[count]

        ref = at(0)
        info["reference"] = ref
        if ref - at(candidates) > max_drop:
            lo, hi = 0, candidates  # lo is within the tolerance, hi is not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ref - at(mid) <= max_drop:
                    lo = mid
                else:
                    hi = mid
            k = lo
        info["metric"] = at(k)
    info["pruned"] = float(k)
    return hard(k), info


# ------------------------------------------------------------------ layers
def _leaf_trace(model: nn.Module, example: Any) -> tuple[list[str], dict[str, tuple]]:
    """Names of leaf modules in order of their first call on ``example``, and the shape of each one's first
    tensor output."""
    from ..masks import call_model

    order: list[str] = []
    shapes: dict[str, tuple] = {}
    handles = []
    for name, mod in model.named_modules():
        if name and not any(True for _ in mod.children()):
            def post(m, a, o, name=name):
                if name not in order:
                    order.append(name)
                    if isinstance(o, Tensor):
                        shapes[name] = tuple(o.shape)
            handles.append(mod.register_forward_hook(post))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, example)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return order, shapes


def _leaf_order(model: nn.Module, example: Any) -> list[str]:
    """Names of leaf modules in order of their first call on ``example``."""
    return _leaf_trace(model, example)[0]


def _post_activation(order: list[str], mods: dict[str, nn.Module], name: str) -> str:
    """From layer ``name``, step over a directly following normalization and activation in forward order."""
    j = order.index(name)
    while j + 1 < len(order) and isinstance(mods[order[j + 1]], _NORMS + _ACTS):
        j += 1
        if isinstance(mods[order[j]], _ACTS):
            break
    return order[j]


def conv_layers(model: nn.Module, example: Any) -> list[str]:
    """Convolution layers in forward order; without any, the hidden linear layers (all but the last)."""
    mods = dict(model.named_modules())
    order = _leaf_order(model, example)
    convs = [n for n in order if isinstance(mods[n], nn.modules.conv._ConvNd)]
    if convs:
        return convs
    lins = [n for n in order if isinstance(mods[n], nn.Linear)]
    if len(lins) > 1:
        return lins[:-1]
    raise UnsupportedError("no convolution or hidden linear layer found; name the feature layers explicitly")


def feature_layers(model: nn.Module, example: Any, n: int = 1) -> list[str]:
    """The modules giving the post-activation features of the last ``n`` conv (or hidden linear) layers:
    from each such layer, step over a directly following normalization and activation in forward order."""
    mods = dict(model.named_modules())
    order = _leaf_order(model, example)
    return [_post_activation(order, mods, name) for name in conv_layers(model, example)[-n:]]


def group_layers(model: nn.Module, example: Any, n: int = 3) -> list[str]:
    """Stand-ins for a CNN's residual-group outputs: the convolutions' outputs are grouped by spatial size
    in forward order and, for each of the last ``n`` groups, the last convolution's post-activation module
    is taken (as :func:`feature_layers` steps over norm and activation). Without convolutions or with
    fewer than ``n`` resolutions, :func:`feature_layers`."""
    mods = dict(model.named_modules())
    order, shapes = _leaf_trace(model, example)
    last: dict[tuple, str] = {}
    for c in order:  # the last conv of each resolution, groups ordered by that conv's position
        if isinstance(mods[c], nn.modules.conv._ConvNd) and c in shapes:
            size = shapes[c][2:]
            last.pop(size, None)
            last[size] = c
    if len(last) < n:
        return feature_layers(model, example, n)
    return [_post_activation(order, mods, name) for name in list(last.values())[-n:]]


def bn_for(model: nn.Module, example: Any, name: str) -> str:
    """The BatchNorm fed directly by conv ``name`` (the mask site under ``placement="bn"``), else ``name``."""
    _, feeds = _trace(model, example, dict(_HANDLERS))
    for bn, conv in feeds.items():
        if conv == name:
            return bn
    return name


class FeatureHooks:
    """Capture the output of named modules on every forward call (the last call wins)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        mods = dict(model.named_modules())
        missing = [n for n in names if n not in mods]
        if missing:
            raise UnsupportedError(f"feature layers not found in the model: {missing}")
        self.names = list(names)
        self.out: dict[str, Tensor] = {}
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(mod, args, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            self.out[name] = out
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# ------------------------------------------------------------- perturbations
def l2_ascent_step(delta: Tensor, step: float, radius: float) -> None:
    """One L2-PGD ascent step on ``delta`` (its ``.grad`` holds the gradient of the loss to maximise):
    ``δ ← Π_{‖δ‖₂≤radius}(δ + step·g/‖g‖₂)``. Normalising the gradient keeps the step meaningful on a
    model that is already confident (tiny loss gradients)."""
    with torch.no_grad():
        g = delta.grad
        if g is not None:
            delta.add_(g, alpha=step / (float(g.norm()) + 1e-12))
            delta.grad = None
    project_l2(delta, radius)


def project_l2(delta: Tensor, radius: float) -> None:
    with torch.no_grad():
        norm = delta.norm()
        if norm > radius:
            delta.mul_(radius / norm)


class InputPerturbation:
    """A universal additive input perturbation ``x + δ`` applied by a forward pre-hook on the model's
    first positional input. Needs continuous (floating point) inputs: one tensor ``(B, …)`` (``example`` a
    tensor, or a tuple/list whose first item is one), or — the torchvision/mmdet detector convention — a
    list of same-shaped images ``[(C, H, W), …]`` as the first argument, each image getting the same δ."""

    def __init__(self, model: nn.Module, example: Any, method: str):
        self.method = method
        first = example[0] if isinstance(example, (tuple, list)) and len(example) else example
        self.per_item = isinstance(first, (list, tuple)) and len(first) > 0 and all(isinstance(t, Tensor) for t in first)
        if self.per_item:
            shapes = {tuple(t.shape) for t in first}
            if len(shapes) != 1:
                raise UnsupportedError(f"{method} needs images of one shape; got {sorted(shapes)[:3]}")
            ref, shape = first[0], first[0].shape
        elif isinstance(first, Tensor):
            ref, shape = first, first.shape[1:]
        else:
            raise UnsupportedError(f"{method} needs a tensor model input (or a list of image tensors); "
                                   f"got {type(first).__name__}")
        if not ref.is_floating_point():
            raise UnsupportedError(
                f"{method} perturbs continuous inputs and cannot apply to {ref.dtype} inputs "
                "(discrete tokens or indices)")
        self.delta = torch.zeros(shape, device=ref.device, requires_grad=True)
        self.active = False
        self.handle = model.register_forward_pre_hook(self._pre)

    def _pre(self, mod, args):
        if not (self.active and args):
            return None
        x = args[0]
        if self.per_item:
            bad = [tuple(t.shape) for t in x if t.shape != self.delta.shape]
            if bad:
                raise UnsupportedError(f"{self.method}: image of shape {bad[0]}, the perturbation is "
                                       f"{tuple(self.delta.shape)} (images must share one shape)")
            return ([t + self.delta.to(t.dtype) for t in x],) + tuple(args[1:])
        return (x + self.delta.to(x.dtype),) + tuple(args[1:])

    def remove(self) -> None:
        self.handle.remove()


def is_output_scaling(h: LayerHandler) -> bool:
    return type(h).install is LayerHandler.install


class NoisyMasks:
    """:class:`NeuronMasks` plus ANP's multiplicative neuron noise: an output-scaling site computes
    ``(m + δ)·(W x) + (1 + ξ)·b`` while ``perturbed`` is on (``b``: bias or BN β). Sites of
    weight-swapping layers (RNN, attention) get the mask only."""

    def __init__(self, model: nn.Module, example: Any, **kw):
        self.nm = NeuronMasks(model, example, **kw)
        self.nm.remove()
        self.perturbed = False
        dev = next(iter(self.nm.masks.values())).device
        self.noise_w = {s.key: torch.zeros(self.nm.masks[s.key].shape, device=dev, requires_grad=True)
                        for s in self.nm.sites}
        self.noise_b = {s.key: torch.zeros(self.nm.masks[s.key].shape, device=dev, requires_grad=True)
                        for s in self.nm.sites}
        for site in self.nm.sites:
            if is_output_scaling(site.handler):
                site.hooks = [site.module.register_forward_hook(self._hook(site))]
            else:
                site.hooks = site.handler.install(site.module, lambda k=site.key: self.nm.masks[k])

    def _hook(self, site):
        h, key = site.handler, site.key

        def hook(mod, args, out):
            m = self.nm.masks[key]
            if not self.perturbed:
                return h.scale_output(mod, out, m)
            dim = h.channel_dim(mod, out) % out.ndim
            cw = _bcast((m + self.noise_w[key]).to(out.dtype), out.ndim, dim)
            b = h.bias(mod)
            if b is None:
                return out * cw
            bb = _bcast(b, out.ndim, dim).to(out.dtype)
            return cw * (out - bb) + _bcast((1 + self.noise_b[key]) * b, out.ndim, dim).to(out.dtype)

        return hook

    def noise(self) -> list[Tensor]:
        return [*self.noise_w.values(), *self.noise_b.values()]

    @torch.no_grad()
    def reset_noise(self, eps: float, generator: torch.Generator) -> None:
        for t in self.noise():
            t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1).mul_(eps).to(t.device))
