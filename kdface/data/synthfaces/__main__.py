"""``python -m kdface.data.synthfaces``: see :func:`kdface.data.synthfaces.cli.main`."""

import sys

from kdface.data.synthfaces.cli import main

if __name__ == "__main__":
    sys.exit(main())
