"""Import Keras (and TensorFlow under it) without TensorFlow's native start-up notices.

Importing TensorFlow 2.21 prints, from C++ and twice (two libraries), absl's "All log messages
before absl::InitializeLog() is called are written to STDERR" and oneDNN's "custom operations
are on" notice, whatever TF_CPP_MIN_LOG_LEVEL says. They would stand in front of the one line
a user error is. `keras()` imports with the C-level stderr (fd 2) sent to a temporary file and
writes back everything else that was printed, so nothing but those notices is lost.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

NOTICE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
                    rb"|I0000 [^\n]*oneDNN custom operations are on)")


def keras():
    """The `keras` module, imported with TensorFlow's start-up notices dropped."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            import keras
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        kept = [line for line in log.read().splitlines(keepends=True) if not NOTICE.match(line)]
    if kept:
        sys.stderr.buffer.write(b"".join(kept))
        sys.stderr.flush()
    return keras
