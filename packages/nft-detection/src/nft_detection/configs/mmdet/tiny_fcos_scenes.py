# An mmdet 3.3 config (not an nft-detect config): FCOS (Tian et al., ICCV 2019) sized for the CPU and the
# 64-px embedded scenes — mmdet's ResNet-18 at 1/8 width (base_channels=8), its FPN and FCOSHead with
# GroupNorm towers, 6 categories. `nft-detect attack|purify --family detector --model mmdet:tiny_fcos` uses
# it; any other mmdet config is given as `--model mmdet:PATH` or `--cfg PATH`. Needs
# `bash scripts/install_mmdet.sh`.
_base_ = ["./_scenes_test_pipeline.py"]  # mmdet's test pipeline for 64-px images (inference_detector)

model = dict(
    type="FCOS",
    data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type="ResNet", depth=18, base_channels=8, num_stages=4, out_indices=(1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type="BN", requires_grad=True), norm_eval=False, style="pytorch"),
    neck=dict(type="FPN", in_channels=[16, 32, 64], out_channels=32, start_level=0, add_extra_convs=False,
              num_outs=3),
    bbox_head=dict(
        type="FCOSHead", num_classes=6, in_channels=32, stacked_convs=2, feat_channels=32, strides=[8, 16, 32],
        regress_ranges=((-1, 12), (12, 24), (24, 1e8)), norm_cfg=dict(type="GN", num_groups=8, requires_grad=True),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="IoULoss", loss_weight=1.0),
        loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)),
    train_cfg=None,
    test_cfg=dict(nms_pre=200, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                  max_per_img=50),
)
