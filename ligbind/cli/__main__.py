"""``python -m ligbind.cli``: the ``ligbind`` command (same as ``python -m ligbind``)."""

import sys

from ligbind.cli import main

if __name__ == "__main__":
    sys.exit(main())
