"""`python -m spine.cli`."""

import sys

from spine.cli import main

sys.exit(main())
