"""``python -m ligbind``: the ``ligbind`` command (same as the console script)."""

import sys

from ligbind.cli import main

if __name__ == "__main__":
    sys.exit(main())
