"""Inputs and outputs on disk: decoding images, header checks, pairs, file names, output files, heat maps."""
