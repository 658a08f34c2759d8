"""Run by torchrun in tests/distributed: NFT on a fixed toy problem, masks saved per rank."""

import sys

import torch

from nft_core import NFT, ClassificationAdapter, MixUp, TensorData
from nft_core.distributed import init_from_env, shutdown, world


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, 8, 8, generator=g)
    y = torch.arange(60) % 3
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 3))
    return model, TensorData(x, y)


def purify():
    model, data = problem()
    nft = NFT(epochs=4, batch_size=21, lr=0.2, shrink=0.02, guard=50.0, augmentation=MixUp(1.0), seed=3)
    return nft.purify(model, data, ClassificationAdapter(3))


if __name__ == "__main__":
    torch.set_num_threads(1)
    assert init_from_env("cpu")
    rank, size = world()
    res = purify()
    torch.save({"masks": res.masks, "loss": [h["loss"] for h in res.history], "size": size,
                "state": res.model.state_dict()}, f"{sys.argv[1]}/rank{rank}.pt")
    shutdown()
