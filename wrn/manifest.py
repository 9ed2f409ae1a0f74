"""``python -m wrn.manifest``, a shim: the command lives on for its users (the README, the docs and
the error messages name it); the code is in wrn/data/prepared.py."""

import sys

from wrn.data.prepared import main

if __name__ == "__main__":
    sys.exit(main())
