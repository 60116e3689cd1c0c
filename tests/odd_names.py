"""File names that break naive text outputs, as the bytes a file system holds: not UTF-8, CSV's separator and
quote, line breaks of every kind (including those Python's str.splitlines also splits at), spaces at both ends,
and plain non-ASCII. Shared by the tests of names in outputs, resuming, and lpips-score's faults."""

NAMES = [b"lat\xe9.png", b"\xff\xfe.png", b'a,b "q".png', b"new\nline.png", b"cr\rx.png",
         "sep\u2028x.png".encode(), "nel\x85x.png".encode(), b" lead and trail .png", "caf\u00e9.png".encode()]
