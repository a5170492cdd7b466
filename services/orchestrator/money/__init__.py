"""The money phases: campaigns on the ad platform, every cent reserved at the safety policy first."""
