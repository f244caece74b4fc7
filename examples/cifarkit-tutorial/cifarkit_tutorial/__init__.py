"""Tutorial plugins for cifarkit: a model, an augmentation, a callback and a strategy."""
