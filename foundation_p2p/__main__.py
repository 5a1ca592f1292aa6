"""`python -m foundation_p2p` is the `foundation-p2p` command."""

import sys

from foundation_p2p.cli import main

sys.exit(main())
