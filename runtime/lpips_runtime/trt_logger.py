"""A TensorRT logger that keeps warnings and errors, so failures can say what TensorRT said."""
from __future__ import annotations


def capturing_logger(trt):
    """A ``trt.ILogger`` whose ``messages`` list holds every warning and error TensorRT logged."""
    severity = trt.ILogger.Severity
    kept = (severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING)

    class CapturingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # pybind11 trampoline: the base must be initialised explicitly
            self.messages: list[str] = []

        def log(self, level, msg):
            if level in kept:
                self.messages.append(str(msg).strip())

        def errors(self, last: int = 3) -> str:
            """The last few messages on one line, or a placeholder."""
            return " | ".join(self.messages[-last:]) or "TensorRT logged no error"

    return CapturingLogger()
