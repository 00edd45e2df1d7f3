"""`python -m spine_tools.cli`."""

import sys

from spine_tools.cli import main

sys.exit(main())
