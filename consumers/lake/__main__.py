"""``python -m consumers.lake [flags]`` = ``tpipe consume telemetry [flags]``."""

import sys

from tpipe.cli import main

sys.exit(main(["consume", "telemetry", *sys.argv[1:]]))
