import sys

from rdbss.cli.main import main

sys.exit(main())
