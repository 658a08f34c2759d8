# Embedded default: generated action clips (6 motion classes, 40 clips each, 32x32, 40 frames -> one in
# five -> 8-frame clips) written as mpeg4 .avi in the UCF-101 layout and read back through the loader;
# small CNN+LSTM backdoored with a static patch on every frame (10% poison, target 0); NFT with this
# project's video recipe: every masked bias tuned, mask averaging, 120 epochs, and the per-class
# surrogate trigger on top of video MixUp (nft_video.config.VIDEO_RECIPES, SURROGATE_AUGMENTATION).
# Every key is documented in nft_video.config.VideoConfig.
data = dict(name="synthetic", frame_step=5, clip_len=8, image_size=32, val_ratio=0.1, synthetic_clips=40)
model = dict(spec="cnn_lstm_small", kwargs=dict(width=16, hidden=64))
attack = dict(name="patch", target=0, poison_rate=0.1)
train = dict(epochs=20, lr=0.05, batch_size=16)
defense = dict(name="nft", recipe="surrogate", options=dict())  # "paper": the paper's NFT; "nft+": NFT+
augmentation = dict(name="auto", options=dict())  # auto: the surrogate trigger under recipe="surrogate", else mixup
