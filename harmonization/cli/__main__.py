"""``python -m harmonization.cli``: the ``harmonize`` command."""

import sys

from harmonization.extras import harmonize

sys.exit(harmonize())
