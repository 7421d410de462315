"""`python -m hebbnas.cli`: the same as the `hebbnas` command."""

import sys

from hebbnas.cli import main

sys.exit(main())
