"""`python -m mta.cli ...` runs the `mta` command (tests and benchmarks start the daemon this way)."""

import sys

from mta.cli.main import main

sys.exit(main())
