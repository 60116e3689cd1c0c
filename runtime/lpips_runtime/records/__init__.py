"""Result rows, resuming them, and summaries of a batch run."""
