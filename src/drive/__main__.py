import sys

from drive.entrypoints.cli import main

sys.exit(main())
