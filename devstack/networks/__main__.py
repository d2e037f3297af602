"""``python -m devstack.networks --port P [--accounts FILE.json]``: every network's stand-in as
a process of the local stack (see ``main``)."""

import sys

from devstack.networks import main

sys.exit(main())
