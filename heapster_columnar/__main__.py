"""``python -m heapster_columnar`` is the ``heapster-columnar`` command."""

import sys

from heapster_columnar.cli import main

sys.exit(main())
