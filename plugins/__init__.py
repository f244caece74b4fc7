"""cifarkit's built-in plugins (installed as the ``cifarkit_plugins`` package).

Each module registers through the ``cifarkit`` entry-point group exactly as a
third-party plugin package does. Keras and TensorFlow are imported inside the
factories, so listing plugins stays fast.
"""
