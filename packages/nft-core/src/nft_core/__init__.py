"""nft-core: Neural mask Fine-Tuning (NFT, ECCV 2024) and the contracts every task package implements."""

from .adapters import ClassificationAdapter, model_device, move_to
from .augment import MixUp, NoAugmentation
from .contracts import (
    Augmentation,
    ConsistencyTarget,
    Defense,
    EvalData,
    MixedTarget,
    PurifyResult,
    TaskAdapter,
)
from .data import BatchSource, TensorData, stratified_split
from .errors import CheckpointError, ConfigError, DataError, NFTInputError, UnsupportedError
from .masks import LayerHandler, NeuronMasks, call_model, register_layer
from .nft import NFT, NFTConfig
from .schedules import Schedule
from .surrogate import SurrogateTrigger

__version__ = "0.1.0"

__all__ = [
    "Augmentation",
    "BatchSource",
    "CheckpointError",
    "ClassificationAdapter",
    "ConfigError",
    "DataError",
    "Defense",
    "EvalData",
    "LayerHandler",
    "MixUp",
    "SurrogateTrigger",
    "MixedTarget",
    "ConsistencyTarget",
    "NFT",
    "NFTConfig",
    "NFTInputError",
    "NeuronMasks",
    "NoAugmentation",
    "PurifyResult",
    "Schedule",
    "TaskAdapter",
    "TensorData",
    "UnsupportedError",
    "call_model",
    "model_device",
    "move_to",
    "register_layer",
    "stratified_split",
]
