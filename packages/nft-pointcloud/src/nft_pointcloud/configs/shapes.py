# Embedded default: generated meshes (8 classes) written as .off in the ModelNet layout, 512 points,
# tiny PointNet++ SSG, PointBA-I, NFT+. Every key is documented in nft_pointcloud.config.PointCloudConfig.
data = dict(name="shapes", num_points=512, val_ratio=0.1, shapes_train=40, shapes_test=15)
model = dict(spec="pointnet2_ssg", width=16)
attack = dict(name="pointba_i", target=0, poison_rate=0.1, mode="all2one")
train = dict(epochs=45, lr=2e-3, batch_size=32, augment=True)
defense = dict(name="nft", recipe="paper", options=dict())  # measured best here; recipe="nft+" for NFT+
augmentation = dict(name="pointcutmix", options=dict())
