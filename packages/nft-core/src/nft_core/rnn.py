"""Input and mask gradients through an LSTM/GRU/RNN that is in eval mode, on a CUDA device.

cuDNN computes an RNN's backward pass only in training mode (``RuntimeError: cudnn RNN backward can only be
called in training mode``), yet NFT tunes its masks with the model in eval mode, and the surrogate trigger's
search, PGD and the clean-label video attack all take input gradients of a model in eval mode. Found on an
NVIDIA H200 (session 16): ``nft-video purify`` on CUDA crashed in the surrogate search's first backward.

Switching the module to training mode instead would be exact only without inter-layer dropout, so the fix here
is the other one: such a forward runs PyTorch's own (non-cuDNN) RNN kernels, which differentiate in any mode
and compute the same function. Only ``torch.backends.cudnn.enabled`` is touched, only for that one forward,
and it is put back afterwards (also on an exception).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["native_rnn", "needs_native_rnn", "rnn_forward"]


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
