"""Make the two folders of the README's ``lpips-score --dir0/--dir1`` example from the example pair.

    python examples/make_folders.py [DEST]      # default DEST: ./lpips-folders

``DEST/gt`` holds references, ``DEST/pred`` what a method produced: ``astronaut.png`` (the JPEG-damaged
``distorted.png``), ``blurred.png`` (a Gaussian blur, sigma 2), ``wrong_size.png`` (resized to 200 pixels wide:
LPIPS compares same-size images, so this pair fails), ``extra.png`` (in gt only) and ``notes.txt``
(not an image). Needs only OpenCV, which lpips-rt installs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent


def main(dest: Path) -> None:
    ref = cv2.imread(str(HERE / "ref.png"))
    distorted = cv2.imread(str(HERE / "distorted.png"))
    gt, pred = dest / "gt", dest / "pred"
    gt.mkdir(parents=True, exist_ok=True)
    pred.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut.png", "blurred.png", "wrong_size.png", "extra.png"):
        cv2.imwrite(str(gt / name), ref)
    cv2.imwrite(str(pred / "astronaut.png"), distorted)
    cv2.imwrite(str(pred / "blurred.png"), cv2.GaussianBlur(ref, (0, 0), 2.0))
    cv2.imwrite(str(pred / "wrong_size.png"), cv2.resize(ref, (200, 256), interpolation=cv2.INTER_AREA))
    (gt / "notes.txt").write_text("reference set: the example astronaut crop\n")
    print(f"{gt}\n{pred}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "lpips-folders"))
