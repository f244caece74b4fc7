"""``cifarkit predict RUN_DIR IMAGE...``: class probabilities for image files."""

from __future__ import annotations

from cifarkit.cli import options
from cifarkit.errors import terminal_safe


def arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("images", metavar="IMAGE", nargs="+")
    parser.add_argument("--top", type=int, default=3, metavar="K",
                        help="classes per image (default 3)")
    options.as_json(parser)
    options.backend(parser, options.LOAD_BACKEND)


def main(args) -> int:
    from cifarkit.api import predict

    results = predict(args.run_dir, args.images, top=args.top, backend=args.backend)
    if args.json:
        print(options.json_text(results))
        return 0
    console = options.make_console()
    for item in results:  # names escaped as everywhere: a file or class name is never obeyed
        best = ", ".join(f"{terminal_safe(p['class'])} {100 * p['probability']:.1f} %"
                         for p in item["predictions"])
        console.print(f"{terminal_safe(item['image'])}: {best}", highlight=False, markup=False)
    return 0


COMMAND = options.Command(
    "predict", main, "classify image files with a run's model", arguments,
    description="Class names and probabilities for image files of any size (resized to the "
                "model's input): PNG and JPEG, or any other format Pillow reads (BMP, GIF, "
                "TIFF, WebP); 8- and 16-bit, grayscale, palette and RGBA images are converted "
                "to 8-bit RGB (16-bit scaled, alpha dropped).")
