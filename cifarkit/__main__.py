import sys

from cifarkit.cli import main

sys.exit(main())
