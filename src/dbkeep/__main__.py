import sys

from dbkeep.cli import main

sys.exit(main())
