# ModelNet40 meshes (<data.root>/<class>/train|test/*.off), 1024 points, PointNet++ SSG at full width,
# the paper's protocol: 10% poison, target 0, 1% of the training set for validation, NFT.
# For the pre-sampled HDF5 release use data.name="h5" with data.root holding ply_data_train*.h5.
data = dict(name="modelnet", root="data/ModelNet40", num_points=1024, val_ratio=0.01)
model = dict(spec="pointnet2_ssg", width=64)
attack = dict(name="pointba_i", target=0, poison_rate=0.1, mode="all2one")
train = dict(epochs=200, lr=1e-3, batch_size=32, augment=True)
defense = dict(name="nft", recipe="paper", options=dict())
augmentation = dict(name="pointcutmix", options=dict())
