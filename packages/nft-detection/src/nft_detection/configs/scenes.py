# The embedded default (what `nft-detect purify` runs without --cfg): generated scenes in the VOC layout.
data = dict(name="scenes", image_size=64, train_sets=[["VOC2007", "train"]], val_sets=[["VOC2007", "val"]],
            test_sets=[["VOC2007", "test"]], scenes=dict())
model = dict(spec="smallcnn", kwargs=dict(width=16))
attack = dict(name="clean_image", trigger=["red_disc", "blue_square"], target="green_triangle", mode="appear",
              poison_rate=1.0)
train = dict(epochs=30, lr=2e-3, batch_size=64, augment=True)
defense = dict(name="nft", recipe="nft+", nft_epochs=60, options=dict())  # recipe="paper": the paper's NFT
augmentation = dict(name="mixup", options=dict())
