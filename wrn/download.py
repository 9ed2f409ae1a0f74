"""``python -m wrn.download``, a shim: the command lives on for its users (the README, the docs and
the error messages name it); the code is in wrn/data/download.py."""

import sys

from wrn.data.download import main

if __name__ == "__main__":
    sys.exit(main())
