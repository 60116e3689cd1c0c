"""Per-frame LPIPS of two videos: decoding with PyAV (the ``video`` extra), frame alignment, scoring
through the one ``Scorer``, and the ``lpips-video`` command.

Modules: ``source`` (open a file or raw YUV, describe its stream), ``colour`` (YUV -> RGB as swscale
does it, with the file's or the user's matrix and range), ``decode`` (a reader thread per video),
``align`` (which frame of REF meets which of DIST), ``score`` (frame pairs through ``Scorer.score_pairs``),
``heatmap_video`` (the spatial maps as a video), ``cli``. Importing this package loads nothing heavy;
PyAV is imported where a video is opened.
"""
