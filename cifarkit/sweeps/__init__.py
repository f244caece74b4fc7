"""``cifarkit sweep RECIPE --grid KEY=V1,V2 ...``: one ordinary run per combination of
the grid's values, in one sweep folder, and a table of the trials at the end.

Every trial's recipe is checked before the first trial starts (a bad value is
one line, and nothing is written). Each trial runs as ``cifarkit run`` in a
process of its own, named ``<recipe>-t<N>`` so its run directory says which
trial it is; ``sweep.json`` in the sweep folder lists the trials. Ctrl-C stops
after the current trial (a second one stops the trial too, which then resumes
like any run); ``cifarkit sweep --resume SWEEP_DIR`` continues: finished
trials are kept, an interrupted one resumes, the rest start.

Modules: :mod:`.folder` (sweep.json, its signature, the trials' rows), :mod:`.grid`
(the grid's trials and running them, one process each), :mod:`.search` (Optuna),
:mod:`.start` (a new sweep or a resumed one, as the command starts it).
"""
