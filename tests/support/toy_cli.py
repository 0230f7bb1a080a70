"""``python tests/support/toy_cli.py ARGS``: the theorylab CLI with the toy study and paper."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `support`
    import support.toy  # noqa: F401 - registers the study '_toy'
    from support.toy_paper import register
    from theorylab.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
