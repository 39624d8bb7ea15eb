"""`python -m mlops.serving`: the prediction server (the project image's default command)."""

import os
import sys

from mlops.serving.server import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
# TensorFlow's native teardown can crash at interpreter exit; the server is done by now.
os._exit(code)
