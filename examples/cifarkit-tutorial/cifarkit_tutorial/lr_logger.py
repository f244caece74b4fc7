from pathlib import Path

import cifarkit


def lr_logger(run_dir: Path, filename: str = "learning_rate.csv"):
    """Log the learning rate at the start of every epoch to a CSV file in the run directory.

    Args:
        filename: file name inside the run directory.
    """
    import keras

    path = cifarkit.run_file(run_dir, filename, "lr_logger: filename")  # not recipe.toml & co.

    class LearningRateLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            path.write_text("epoch,learning_rate\n")

        def on_epoch_begin(self, epoch, logs=None):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            with path.open("a") as f:
                f.write(f"{epoch + 1},{rate:.6g}\n")

    return LearningRateLogger()


@cifarkit.hookimpl
def register_callbacks(register):
    register(lr_logger)
