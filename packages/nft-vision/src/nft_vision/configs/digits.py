# Embedded default: scikit-learn's bundled digits at 32x32, BadNets, a small CNN, NFT with vision's
# surrogate recipe (docs/results/ablations.md "The surrogate recipe's parts"). Every key is documented in nft_vision.config.VisionConfig.
data = dict(name="digits", image_size=32, val_ratio=0.1)
model = dict(spec="smallcnn", width=16)
attack = dict(name="badnets", target=0, poison_rate=None, mode="all2one")  # None: the attack's own (10%; SIG/CLB 80% of the target class)
train = dict(epochs=10, lr=0.05, batch_size=64, augment=False)
# recipe="paper" for the paper's NFT (with mixup), recipe="nft+" for NFT+ (with mixup)
defense = dict(name="nft", recipe="surrogate", options=dict())
augmentation = dict(name="auto", options=dict())  # auto: the surrogate trigger under recipe="surrogate"
