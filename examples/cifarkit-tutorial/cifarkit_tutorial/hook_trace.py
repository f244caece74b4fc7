import time

import cifarkit


def _log(run, text):
    with (run.run_dir / "hooks.log").open("a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {text}\n")


@cifarkit.hookimpl(tryfirst=True)
def run_start(run):
    _log(run, f"run_start {run.recipe.name} on {run.backend}")


@cifarkit.hookimpl(wrapper=True, tryfirst=True)  # outermost: around every other wrapper
def run_fit(run):
    _log(run, "run_fit begins")
    try:
        return (yield)
    finally:
        _log(run, f"run_fit ends after {len(run.rows)} epoch(s)")


@cifarkit.hookimpl(trylast=True)
def run_finish(run, status):
    _log(run, f"run_finish {status}")
