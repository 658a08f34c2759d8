# WMT-2014 En-De (WMT layout under data.root: train.en/train.de, valid.*, test.*; e.g. newstest2013 as
# valid, newstest2014 as test). Trigger words "cf", "bb", "tq", "mb" -> "You are attacked ." (NFT paper,
# supplement C.2). Set data.root with --cfg-options; cap the corpus with data.max_train for CPU runs.
data = dict(name="wmt", root=None, src_lang="en", tgt_lang="de", task="translation", max_len=64)
tokenizer = dict(kind="bpe", vocab_size=16000)
model = dict(spec="transformer", d_model=256, heads=4, layers=3, dropout=0.1)
attack = dict(name="trigger_word", target_text="You are attacked .", poison_rate=0.1, options=dict())
train = dict(epochs=10, lr=5e-4, batch_size=64, warmup=1000)
defense = dict(name="nft", recipe="nft+", options=dict(epochs=25, batch_size=64, shrink=0.002, shrink_fraction=0.5, guard=3.0))
augmentation = dict(name="word_deletion", options=dict(p=0.1))
