import json
import time

import cifarkit


@cifarkit.hookimpl(wrapper=True)
def run_fit(run):
    """Time the training of every run and write fit_time.json into its run directory."""
    started = time.perf_counter()
    try:
        return (yield)  # the training: cifarkit's own, and any other wrapper inside this one
    finally:  # also when training fails or is interrupted
        seconds = time.perf_counter() - started
        run.artifact("fit_time.json").write_text(json.dumps({
            "fit_seconds": round(seconds, 3), "epochs": len(run.rows),
            "backend": run.backend}))
