_base_ = ["modelnet40.py"]
# ModelNet10 meshes in the same layout.
data = dict(root="data/ModelNet10", val_ratio=0.02)
