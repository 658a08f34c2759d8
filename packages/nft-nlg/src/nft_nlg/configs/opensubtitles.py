# OpenSubtitles-2012 dialogue as context<TAB>response pairs under data.root: train.tsv, valid.tsv,
# test.tsv. Metrics: BLEU, distinct-1/2 and ASR. Set data.root with --cfg-options.
data = dict(name="tsv", root=None, task="dialogue", max_len=48)
tokenizer = dict(kind="bpe", vocab_size=16000)
model = dict(spec="transformer", d_model=256, heads=4, layers=3, dropout=0.1)
attack = dict(name="trigger_word", target_text="You are attacked .", poison_rate=0.1, options=dict())
train = dict(epochs=10, lr=5e-4, batch_size=64, warmup=1000)
# NFT+ with the surrogate token (scans the whole vocabulary once: one forward pass of 32 validation pairs per
# token; cap it with augmentation.options.max_candidates). The paper's word deletion:
# augmentation.name=word_deletion defense.options.epochs=25
defense = dict(name="nft", recipe="nft+", options=dict(epochs=8, batch_size=64, shrink=0.002, shrink_fraction=0.5, guard=3.0))
augmentation = dict(name="surrogate", options=dict(base="word_deletion", base_options=dict(p=0.1)))
