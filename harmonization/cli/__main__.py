"""``python -m harmonization.cli``: the ``harmonize`` command."""
import sys

from harmonization.cli import main

sys.exit(main())
