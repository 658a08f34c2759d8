"""nft_video."""
