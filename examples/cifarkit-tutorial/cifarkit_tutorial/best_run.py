import cifarkit


def arguments(parser):
    parser.add_argument("folder", nargs="?", default="runs",
                        help="where the run directories are (default: runs)")


def best_run(args):
    """Print the completed run with the best test accuracy in a folder."""
    rows = [r for r in cifarkit.list_runs(args.folder)
            if r["status"] == "completed" and r.get("test_accuracy") is not None]
    if not rows:  # a user error: one line, exit status 2
        raise cifarkit.CifarkitError(f"{args.folder}: no completed run")
    best = max(rows, key=lambda r: r["test_accuracy"])
    print(f"{best['path']}  test accuracy {100 * best['test_accuracy']:.2f} %")


@cifarkit.hookimpl
def register_commands(register):
    register("best-run", best_run, help="the completed run with the best test accuracy",
             arguments=arguments)
