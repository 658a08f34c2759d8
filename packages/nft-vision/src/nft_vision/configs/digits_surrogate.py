# The embedded default (digits, BadNets, small CNN) purified with the surrogate-trigger recipe instead of
# NFT+ (docs/results/ablations.md "The surrogate recipe's parts"; this project's, not the paper's): the paper's NFT plus
#  - a surrogate trigger searched on the clean validation data (the smallest patch that flips 99% of the
#    images it can flip), appended with their true labels to every MixUp batch;
#  - the output layer's bias tuned with the masks (gives back the prior the surrogate takes from the
#    attacker's class);
#  - the masks of the last 30% of the steps averaged before folding.
# Every other key keeps its default (the embedded default's, so its cached backdoored model is reused).
# The same two lines purify any model: copy them into your own config.
defense = dict(name="nft", recipe="paper", options=dict(tune_bias="last", average=0.3))
augmentation = dict(name="surrogate", options=dict(fooling_target=0.99))
