"""Input and mask gradients through an LSTM/GRU/RNN that is in eval mode, on a CUDA device.

cuDNN computes an RNN's backward pass only in training mode (``RuntimeError: cudnn RNN backward can only be
called in training mode``), yet NFT tunes its masks with the model in eval mode, and the surrogate trigger's
search, PGD and the clean-label video attack all take input gradients of a model in eval mode: without
this, ``nft-video purify`` on CUDA stops in the surrogate search's first backward.

Switching the module to training mode instead would be exact only without inter-layer dropout, so the fix here
is the other one: such a forward runs PyTorch's own (non-cuDNN) RNN kernels, which differentiate in any mode
and compute the same function. Only ``torch.backends.cudnn.enabled`` is touched, only for that one forward,
and it is put back afterwards (also on an exception).

Three ways in: a model's own forward calls :func:`rnn_forward`; NFT's RNN mask handler switches for the
masked RNNs; and :func:`native_rnns` does it for *every* RNN module of someone else's model
while a defense runs — NFT and every baseline defense's ``purify`` are wrapped in it (:func:`rnn_safe`), as is
:func:`~nft_core.augment.frozen_model` (the searches of PGD and the surrogate trigger).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

__all__ = ["native_rnn", "native_rnns", "needs_native_rnn", "rnn_forward", "rnn_safe"]


def needs_native_rnn(rnn: nn.RNNBase) -> bool:
    """True where cuDNN would run ``rnn``'s forward and could not differentiate it: eval mode, gradients on,
    weights on a CUDA device, cuDNN enabled."""
    weight = next(iter(rnn.parameters()), None)
    return (not rnn.training and torch.is_grad_enabled() and weight is not None and weight.device.type == "cuda"
            and torch.backends.cudnn.enabled)


@contextmanager
def native_rnn(rnn: nn.RNNBase) -> Iterator[None]:
    """Run what the block calls on ``rnn`` without cuDNN where :func:`needs_native_rnn` says so."""
    if not needs_native_rnn(rnn):
        yield
        return
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = True


def rnn_forward(rnn: nn.RNNBase, *args: Any, **kwargs: Any) -> Any:
    """``rnn(*args, **kwargs)``, differentiable in eval mode on CUDA too (for models' own forward methods)."""
    with native_rnn(rnn):
        return rnn(*args, **kwargs)


_switched: list[int] = []  # ids of the RNN modules whose forward switched cuDNN off (innermost last)


def _pre(module: nn.Module, args: Any) -> None:
    if isinstance(module, nn.RNNBase) and needs_native_rnn(module):
        torch.backends.cudnn.enabled = False
        _switched.append(id(module))


def _post(module: nn.Module, args: Any, output: Any) -> None:
    if _switched and _switched[-1] == id(module):
        _switched.pop()
        torch.backends.cudnn.enabled = True


def _has_rnn(model: Any) -> bool:
    return isinstance(model, nn.Module) and any(isinstance(m, nn.RNNBase) for m in model.modules())


@contextmanager
def native_rnns(model: nn.Module | None = None) -> Iterator[None]:
    """Inside the block, every forward of an ``nn.RNN``/``LSTM``/``GRU`` module (of any model, copies included)
    runs without cuDNN where :func:`needs_native_rnn` says so, and cuDNN is switched back on as it returns (also
    on an exception: the hooks run with ``always_call``). Process-wide module hooks, installed only when
    ``model`` holds an RNN module (``None``: always) and removed on exit; nothing else changes."""
    if model is not None and not _has_rnn(model):
        yield
        return
    pre = register_module_forward_pre_hook(_pre)
    post = register_module_forward_hook(_post, always_call=True)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def rnn_safe(purify: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a defense's ``purify(self, model, data, adapter)``: the whole run inside
    :func:`native_rnns` for that model, so a third-party LSTM in eval mode can be differentiated on CUDA."""

    @functools.wraps(purify)
    def wrapped(self: Any, model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with native_rnns(model):
            return purify(self, model, *args, **kwargs)

    return wrapped
