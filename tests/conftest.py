import os

import pytest
import torch

# Tests run on 2 CPU cores, several pytest-xdist workers at once: one thread per worker.
torch.set_num_threads(int(os.environ.get("NFT_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

# Loaded CI machines make per-example timing meaningless: no hypothesis deadlines.
from hypothesis import settings  # noqa: E402

settings.register_profile("nft", deadline=None)
settings.load_profile("nft")
