"""Money: what each image costs (prices), and the spend caps that keep an install within its owner's budget."""
