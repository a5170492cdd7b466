"""Phase-1 ad-market simulator: personas, auctions, pacing and a curriculum of difficulty levels."""
