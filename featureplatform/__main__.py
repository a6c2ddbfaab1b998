"""`python -m featureplatform`: same as `fp-server`."""

import sys

from featureplatform.server import main

sys.exit(main())
