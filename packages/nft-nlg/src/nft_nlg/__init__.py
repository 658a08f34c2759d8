"""nft_nlg."""
