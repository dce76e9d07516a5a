"""``python -m sklearn_xnn``: the ``sklearn-xnn`` command."""

import sys

from sklearn_xnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
