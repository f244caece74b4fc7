"""Put this folder on PYTHONPATH to make `import tensorflow` fail in a process.

A JAX-backend run must never import TensorFlow; with this on the path, an
attempt raises ImportError, and is also appended to the file named by
CIFARKIT_BLOCKED_LOG (if set), so an attempt that something catches is seen too:

    PYTHONPATH=tests/no_tensorflow cifarkit run recipes/fast.toml --backend jax

CIFARKIT_BLOCK_ALSO (comma-separated top-level names) blocks more packages the
same way, as if an optional extra were not installed.
"""

import os
import sys
import traceback


class _BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        blocked = ["tensorflow", *filter(None, os.environ.get("CIFARKIT_BLOCK_ALSO", "").split(","))]
        if name.split(".")[0] in blocked:
            log = os.environ.get("CIFARKIT_BLOCKED_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(f"import {name} attempted:\n{''.join(traceback.format_stack())}\n")
            raise ImportError(f"import {name} is blocked (tests/no_tensorflow)")
        return None


sys.meta_path.insert(0, _BlockTensorFlow())
