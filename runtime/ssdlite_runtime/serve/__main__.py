"""``python -m ssdlite_runtime.serve MODEL``: the ``ssdlite-serve`` command."""

import sys

from ssdlite_runtime.serve import main

sys.exit(main())
