import sys

from avscene.demo.cli import main

sys.exit(main())
