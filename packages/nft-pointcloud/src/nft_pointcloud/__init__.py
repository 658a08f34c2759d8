"""nft_pointcloud."""
