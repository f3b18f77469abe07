"""`python -m noisevision.cli` (torchrun's `-m noisevision.cli pretrain ...`)."""

import sys

from noisevision.cli import main

sys.exit(main())
