# Shared by the bundled mmdet configs (mmdet `_base_` inheritance): mmdet's own test pipeline for the 64-px
# scenes, used by mmdet.apis.inference_detector; nft-detect feeds tensors to the model directly.
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(64, 64), keep_ratio=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
test_dataloader = dict(batch_size=1, num_workers=0,
                       dataset=dict(type="VOCDataset", data_root="", pipeline=test_pipeline, test_mode=True))
