"""``python -m radiology.cli``: the ``radiology`` command."""

import sys

from radiology.cli import main

sys.exit(main())
