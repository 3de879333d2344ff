"""``python -m comptrust`` runs the CLI."""

import sys

from comptrust.cli import main

sys.exit(main())
