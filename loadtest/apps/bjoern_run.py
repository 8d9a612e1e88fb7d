"""Serve a WSGI app with bjoern: python bjoern_run.py MODULE:NAME HOST PORT.

bjoern has no command line of its own; it is one process and one thread.
"""

import importlib
import sys

import bjoern


def main():
    spec, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module, _, name = spec.partition(":")
    sys.path.insert(0, ".")
    app = getattr(importlib.import_module(module), name or "application")
    bjoern.run(app, host, port)


if __name__ == "__main__":
    main()
