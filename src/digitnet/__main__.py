"""``python -m digitnet`` is the same as the ``digitnet`` command."""

import sys

from .app.cli import main

sys.exit(main())
