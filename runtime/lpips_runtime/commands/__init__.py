"""The command lines built on the Scorer: lpips-score, the official scripts, and what they share."""
