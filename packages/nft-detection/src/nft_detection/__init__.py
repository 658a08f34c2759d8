"""nft-detection: NFT for multi-label classification and object detection under clean-image backdoors
(Pascal VOC / MS-COCO on disk, or the embedded generated scenes in the VOC layout).

Entry points: :class:`CleanImageBackdoor` (Chen et al., ICLR 2023), :class:`MultiLabelAdapter`,
:class:`MultiLabelMixUp`, :class:`DetectionAdapter`, :class:`DetectionMixUp`, :func:`load_voc`,
:func:`load_coco`, :func:`generate_scenes`, :func:`create_multilabel_model`, :func:`create_detector`;
the CLI is ``nft-detect`` (:func:`nft_detection.cli.main`; ``--family detector`` for object detectors, see
:mod:`nft_detection.detection`).
"""

from .adapters import DetectionAdapter, MultiLabelAdapter
from .attacks import CleanImageBackdoor
from .augment import DetectionMixUp, DetectionMosaic, MultiLabelMixUp, MultiLabelMosaic
from .coco import load_coco
from .metrics import average_precision, coco_map, mean_average_precision, multilabel_asr
from .models import MultiLabelCNN, create_detector, create_multilabel_model
from .scenes import SCENE_CLASSES, generate_scenes
from .voc import VOC_CLASSES, Record, load_voc, records_to_detection, records_to_multilabel, write_voc

__all__ = [
    "CleanImageBackdoor", "DetectionAdapter", "DetectionMixUp", "DetectionMosaic", "MultiLabelMosaic", "MultiLabelAdapter", "MultiLabelCNN",
    "MultiLabelMixUp", "Record", "SCENE_CLASSES", "VOC_CLASSES", "average_precision", "coco_map",
    "create_detector", "create_multilabel_model", "generate_scenes", "load_coco", "load_voc",
    "mean_average_precision", "multilabel_asr", "records_to_detection", "records_to_multilabel", "write_voc",
]
