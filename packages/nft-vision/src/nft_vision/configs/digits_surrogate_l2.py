# As digits_surrogate, with the surrogate trigger's L2 kind: one universal perturbation of L2 norm <= 2
# (searched on the clean validation data) instead of a patch (docs/results/ablations.md "The surrogate recipe's parts": on digits it
# removes BadNets, Blend, WaNet and Dynamic on all three NFT seeds measured, but not Trojan, whose
# trigger the L2 search does not find). Every other key keeps its default.
defense = dict(name="nft", recipe="paper", options=dict(tune_bias="last", average=0.3))
augmentation = dict(name="surrogate", options=dict(kind="l2", eps=2.0))
