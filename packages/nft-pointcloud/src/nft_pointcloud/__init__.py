"""nft-pointcloud: NFT backdoor purification for 3D point-cloud classifiers (PointNet++ on ModelNet).

Data (ModelNet .off meshes, pre-sampled .h5, generated shapes), batched FPS / ball query, PointNet,
PointNet++ SSG/MSG, DGCNN, the PointBA-I / PointBA-O / PointCBA / 3DPC-BA attacks, PointCutMix, the
adapter and the ``nft-pointcloud`` CLI (:func:`nft_pointcloud.cli.main`).
"""

from .attacks import ATTACKS, PointBAI, PointBAO, PointCBA, ThreeDPCBA
from .augment import PointCutMix, RandomScaleJitter
from .config import PointCloudConfig
from .data import SHAPES, generate_shapes, load_h5, load_modelnet, read_off, sample_surface, write_off
from .models import BUILTIN_MODELS, DGCNN, PointNet, PointNet2MSG, PointNet2SSG, create_model
from .ops import ball_query, farthest_point_sample, gather_points, knn
from .workflow import PointCloudAdapter, backdoor

__all__ = [
    "ATTACKS", "BUILTIN_MODELS", "DGCNN", "PointBAI", "PointBAO", "PointCBA", "PointCloudAdapter",
    "PointCloudConfig", "PointCutMix", "PointNet", "PointNet2MSG", "PointNet2SSG", "RandomScaleJitter", "SHAPES",
    "ThreeDPCBA", "backdoor", "ball_query", "create_model", "farthest_point_sample", "gather_points",
    "generate_shapes", "knn", "load_h5", "load_modelnet", "read_off", "sample_surface", "write_off",
]
