"""``python -m radiology`` runs the command line."""

import sys

from radiology.cli import main

sys.exit(main())
