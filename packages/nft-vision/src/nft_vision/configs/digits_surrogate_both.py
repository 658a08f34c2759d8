# As digits_surrogate, with both searches of the surrogate trigger (kind "both"): the patch and the L2
# perturbation are searched on the same clean validation batch, and a gate keeps the ones that look like
# one backdoor (the L2 trigger if it flips >= 90% of the batch; the patch unless the kept L2 trigger points
# at another class). docs/results/ablations.md "The surrogate recipe's parts": the patch search misses Blend and the L2 search misses
# Trojan on digits; the gated pair covers both. Two rounds of the patch search (the second barred from the
# class the first went to; the smaller mask that flips 99% wins) rescue a first search that lands on a natural
# class; rounds=1 gives the one-round search. Every other key keeps its default.
defense = dict(name="nft", recipe="paper", options=dict(tune_bias="last", average=0.3))
augmentation = dict(name="surrogate", options=dict(kind="both", fooling_target=0.99, rounds=2))
