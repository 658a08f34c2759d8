# UCF-101 (videos under data.root = .../UCF-101, split files in <root>/ucfTrainTestlist or data.split_dir),
# the NFT paper's protocol: ResNet-50 per frame + LSTM, one frame in five, static patch trigger, target 0,
# 5% of each class of the training clips held out for validation, video MixUp.
# ResNet-50 ImageNet weights only from a local file: model.kwargs.encoder_weights=/path/resnet50.pth
data = dict(name="ucf101", root="data/UCF-101", split=1, frame_step=5, clip_len=16, image_size=112,
            val_ratio=0.05, on_bad_clip="skip")
model = dict(spec="cnn_lstm", kwargs=dict(hidden=512, encoder_weights=None))
attack = dict(name="patch", target=0, poison_rate=0.1)
train = dict(epochs=20, lr=0.01, batch_size=16, jitter=1)
defense = dict(name="nft", recipe="nft+", options=dict(batch_size=32))
augmentation = dict(name="mixup", options=dict())
