"""Tutorial plugins for cifarkit: one of each kind, and two around the run itself."""
