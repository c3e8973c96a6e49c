import sys

from vadd.cli import main

sys.exit(main())
