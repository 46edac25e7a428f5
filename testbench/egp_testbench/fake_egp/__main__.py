"""`python -m egp_testbench.fake_egp`: the `fake-egp` command."""

import sys

from egp_testbench.fake_egp.cli import main

sys.exit(main())
