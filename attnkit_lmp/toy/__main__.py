"""Command line of the toy world: ``python -m attnkit_lmp.toy train|quality ...``."""

from attnkit_lmp.toy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
