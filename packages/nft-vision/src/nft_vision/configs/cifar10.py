# CIFAR-10 (python pickle batches under data.root), PreActResNet-18, the paper's protocol: 10% poison,
# target 0, 1% of the training set held out for validation, NFT with the paper's settings.
data = dict(name="cifar10", root="data/cifar-10-batches-py", image_size=32, val_ratio=0.01)
model = dict(spec="preactresnet18", mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
attack = dict(name="badnets", target=0, poison_rate=None, mode="all2one")  # None: the attack's own (10%; SIG/CLB 80% of the target class)
train = dict(epochs=100, lr=0.1, batch_size=128, augment=True)
defense = dict(name="nft", recipe="nft+", options=dict())
augmentation = dict(name="mixup", options=dict())
