import sys

from localbroker.cli import main

sys.exit(main())
