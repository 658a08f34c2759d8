_base_ = ["cifar10.py"]
# GTSRB in torchvision's layout under data.root; 3% validation as in the paper.
data = dict(name="gtsrb", root="data/gtsrb", val_ratio=0.03)
model = dict(mean=[0.3403, 0.3121, 0.3214], std=[0.2724, 0.2608, 0.2669])
train = dict(augment=False)
