# Pascal VOC 2007 (VOCdevkit layout under data.root): train on trainval, test on test, the paper's setting
# (NFT Table 2). The defender holds 5% of trainval with clean labels. Clean-image backdoor (Chen et al.,
# ICLR 2023): images holding both trigger categories get their labels poisoned.
data = dict(name="voc", root=None, image_size=224, train_sets=[["VOC2007", "trainval"]], val_sets=None,
            test_sets=[["VOC2007", "test"]], val_ratio=0.05, max_images=0, scenes=dict())
model = dict(spec="torchvision:resnet50", kwargs=dict(), checkpoint=None)
attack = dict(name="clean_image", trigger=["person", "dog"], target="car", mode="appear", poison_rate=1.0)
train = dict(epochs=40, lr=1e-3, batch_size=32, augment=True)
defense = dict(name="nft", recipe="nft+", nft_epochs=100, options=dict())
augmentation = dict(name="mixup", options=dict())
