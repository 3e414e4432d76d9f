"""`python -m vigil` is the `vigil` command."""

import sys

from vigil.cmd.main import main

sys.exit(main())
