#!/usr/bin/env python3
"""Start vlhub exactly like the ``vlhub`` console script: ``python launcher.py [ARGS]``.

With no arguments it starts the launcher (``vlhub launch``).
"""
import sys

try:
    from vlhub.core.cli import main
except ImportError:
    sys.exit("vlhub is not installed here. Run `make launch` (or `pip install -e .`) in this folder first.")

if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.argv.append("launch")
    main()
