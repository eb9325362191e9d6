"""`python -m leadpulse ...` is the `leadpulse` command."""

import sys

from leadpulse.cli.main import main

sys.exit(main())
