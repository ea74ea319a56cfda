"""``python -m eeg2bold.cli``: the eeg2bold command."""

import sys

from eeg2bold.cli.main import main

sys.exit(main())
