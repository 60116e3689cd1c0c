"""Model files: the net table, reading and checking exports, finding them, TensorRT sidecars."""
