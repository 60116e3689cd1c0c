"""Frame alignment (offset, step, limit, resumption, different lengths) on stand-in frame streams."""
from __future__ import annotations

import pytest

from lpips_runtime.errors import InputError
from lpips_runtime.video.align import Alignment, PairingOutcome, pair_frames
from lpips_runtime.video.decode import DecodedFrame


def _frames(n: int, tag: str):
    return [DecodedFrame(i, i / 25, rgb=f"{tag}{i}") for i in range(n)]


def _pairs(n_ref, n_dist, skip=frozenset(), **options):
    outcome = PairingOutcome()
    pairs = [(p.frame, p.ref.rgb, p.dist.rgb) for p in
             pair_frames(_frames(n_ref, "r"), _frames(n_dist, "d"), Alignment(**options), frozenset(skip), outcome)]
    return pairs, outcome


def test_offsets_step_and_limit():
    assert _pairs(5, 5)[0] == [(i, f"r{i}", f"d{i}") for i in range(5)]
    assert _pairs(5, 7, offset=2)[0] == [(i, f"r{i}", f"d{i + 2}") for i in range(5)]
    assert _pairs(7, 5, offset=-2)[0] == [(i, f"r{i}", f"d{i - 2}") for i in range(2, 7)]
    assert [p[0] for p in _pairs(10, 10, step=3)[0]] == [0, 3, 6, 9]
    pairs, outcome = _pairs(10, 10, step=3, max_frames=2)
    assert [p[0] for p in pairs] == [0, 3] and outcome.ended_by_limit and outcome.count_mismatch() is None
    assert [p[0] for p in _pairs(10, 10, skip={1, 2, 5})[0]] == [0, 3, 4, 6, 7, 8, 9]


def test_wanted_predicates_agree_with_pairing():
    a = Alignment(offset=3, step=2, max_frames=3)
    ref, dist = a.ref_wanted(frozenset({2})), a.dist_wanted(frozenset({2}))
    assert [i for i in range(12) if ref(i)] == [0, 4]
    assert [j for j in range(12) if dist(j)] == [3, 7]
    b = Alignment(offset=-2)
    assert [i for i in range(5) if b.ref_wanted()(i)] == [2, 3, 4] and [j for j in range(4) if b.dist_wanted()(j)] == [0, 1, 2, 3]


def test_different_lengths():
    pairs, outcome = _pairs(6, 4)
    assert len(pairs) == 4 and outcome.count_mismatch() == "frame counts differ: REF has 6 frames, DIST has 4"
    _, outcome = _pairs(4, 6, offset=1)
    assert outcome.count_mismatch() == ("frame counts differ: REF has 4 frames, DIST has 6 (with --offset 1: "
                                        "4 REF frames against 5 DIST frames)")
    pairs, outcome = _pairs(6, 4, shortest=True)
    assert len(pairs) == 4 and outcome.count_mismatch() is None and outcome.finished
    _, outcome = _pairs(2, 6, offset=-3)  # REF shorter than the frames it was to skip
    assert outcome.count_mismatch().startswith("frame counts differ: REF has 2 frames, DIST has 6")
    assert _pairs(5, 5, max_frames=9)[1].count_mismatch() is None


def test_failed_frames_pair_with_their_error():
    ref = _frames(3, "r")
    ref[1] = DecodedFrame(1, 0.04, error="REF frame 1: cannot decode (Invalid data found when processing input)")
    pairs = list(pair_frames(ref, _frames(3, "d"), Alignment()))
    assert [p.error for p in pairs] == [None, ref[1].error, None]


@pytest.mark.parametrize("options", [{"step": 0}, {"max_frames": 0}])
def test_bad_alignment(options):
    with pytest.raises(InputError):
        Alignment(**options)
