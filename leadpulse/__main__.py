"""`python -m leadpulse ...` is the `leadpulse` command."""

import sys

from leadpulse.core import main

sys.exit(main())
