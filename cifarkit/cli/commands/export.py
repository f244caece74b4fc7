"""``cifarkit export RUN_DIR --format onnx|saved_model``: a run's model for deployment,
checked by its runtime before it is written."""

from __future__ import annotations

from pathlib import Path

from cifarkit.cli import options


def arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--format", required=True, choices=["onnx", "saved_model"])
    parser.add_argument("--output", metavar="PATH",
                        help="where to write (default: RUN_DIR/export/model.onnx or "
                             "RUN_DIR/export/saved_model)")
    options.backend(parser, "Keras backend to load the model on (default: tensorflow, "
                            "whichever backend trained it)")
    options.as_json(parser, "print the description as JSON")


def main(args) -> int:
    from cifarkit.api import export

    description = export(args.run_dir, args.format, args.output, backend=args.backend)
    if args.json:
        print(options.json_text(description))
        return 0
    where = Path(args.output) if args.output else Path(args.run_dir) / "export"
    print(f"exported {args.format}: {where if args.output else where / description['path']} "
          f"(input {description['input']['name']!r}: float32 NHWC "
          f"{description['input']['shape'][1:]} 0-255; {len(description['class_names'])} "
          "class probabilities out)")
    checked = description["checked"]
    same = checked["same_class_as_trained"]
    print(f"checked with {checked['runtime']} on {checked['on']}: largest difference from "
          f"Keras {checked['max_abs_difference']:.2g} in float32, "
          f"{checked['max_abs_difference_vs_trained_precision']:.2g} from the model as it "
          f"trained; the same class for {100 * same:.1f} % of them"
          + ("" if same == 1 else " (the export runs in float32; the run trained in lower "
                                   "precision)"))
    return 0


COMMAND = options.Command(
    "export", main, "export a run's model as ONNX or a TensorFlow SavedModel", arguments,
    description="Export RUN_DIR/model.keras with Keras's model.export: the whole inference "
                "path (raw 0-255 float32 NHWC pixels in, class probabilities out), and a JSON "
                "beside it that describes the input, output and class names. ONNX needs the "
                "export extra: pip install -e \".[export]\".")
