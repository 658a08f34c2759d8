"""nft-video: NFT for action recognition — UCF-101/HMDB-51 loaders (PyAV), CNN+LSTM and torchvision 3D
models, video backdoor attacks, video MixUp, the task adapter and the ``nft-video`` CLI."""

from .adapter import VideoAdapter
from .attacks import ATTACKS, BlendTrigger, CleanLabelVideo, PatchTrigger
from .augment import Compose, TemporalJitter, VideoCutMix, VideoMixUp
from .config import VideoConfig
from .data import VideoSet, decode_clip, hmdb51_split, load_clips, ucf101_split
from .models import CNNLSTM, SmallCNNLSTM, Video3D, create_model
from .synthetic import CLASSES, write_synthetic_ucf

__all__ = [
    "ATTACKS", "BlendTrigger", "CLASSES", "CNNLSTM", "CleanLabelVideo", "Compose", "PatchTrigger", "SmallCNNLSTM",
    "TemporalJitter", "Video3D", "VideoAdapter", "VideoConfig", "VideoCutMix", "VideoMixUp", "VideoSet",
    "create_model", "decode_clip", "hmdb51_split", "load_clips", "ucf101_split", "write_synthetic_ucf",
]
