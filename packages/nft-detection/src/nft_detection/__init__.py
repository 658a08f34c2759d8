"""nft_detection."""
