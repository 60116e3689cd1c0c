"""A TensorRT logger that keeps warnings and errors, so failures can say what TensorRT said."""
from __future__ import annotations


def capturing_logger(trt, keep_all: bool = False):
    """A ``trt.ILogger`` whose ``messages`` list holds every warning and error TensorRT logged (``keep_all``:
    every message, verbose ones included: the builder's detailed log, which lists each layer's types)."""
    severity = trt.ILogger.Severity
    kept = (severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING)
    problems = kept
    if keep_all:
        kept = tuple(severity.__members__.values())

    class CapturingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # pybind11 trampoline: the base must be initialised explicitly
            self.messages: list[str] = []
            self.problems: list[str] = []

        def log(self, level, msg):
            if level in kept:
                self.messages.append(str(msg).strip())
            if level in problems:
                self.problems.append(str(msg).strip())

        def errors(self, last: int = 3) -> str:
            """The last few warnings and errors on one line, or a placeholder."""
            return " | ".join(self.problems[-last:]) or "TensorRT logged no error"

    return CapturingLogger()
