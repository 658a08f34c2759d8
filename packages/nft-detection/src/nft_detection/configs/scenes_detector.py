# The embedded detector default (what `nft-detect purify --family detector` runs without --cfg): the generated
# scenes in the VOC layout, a CPU-sized FCOS on a tiny FPN backbone, box-level clean-image poisoning
# (disappear: the target's boxes are removed from the training images holding the trigger combination),
# NFT+ with detection MixUp. model.spec: any of nft_detection.models.DETECTORS.
data = dict(name="scenes", image_size=64, train_sets=[["VOC2007", "train"]], val_sets=[["VOC2007", "val"]],
            test_sets=[["VOC2007", "test"]], scenes=dict())
model = dict(family="detector", spec="tiny_fcos", kwargs=dict())
attack = dict(name="clean_image", trigger=["red_disc", "blue_square"], target="green_triangle", mode="disappear",
              poison_rate=1.0)
train = dict(epochs=30, lr=5e-3, batch_size=16, augment=True)
defense = dict(name="nft", recipe="nft+", nft_epochs=60, options=dict())  # recipe="paper": the paper's NFT
augmentation = dict(name="mixup", options=dict())  # detection MixUp
threads = 1  # a tiny detector is hundreds of small ops: one thread each (see config.detector_config)
