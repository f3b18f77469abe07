import sys

from noisevision.cli import main

sys.exit(main())
