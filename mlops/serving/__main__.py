"""`python -m mlops.serving`: the prediction server (the project image's default command)."""

import gc
import os
import sys

# The cyclic collector stays off until the models are loaded (the service then freezes what
# start-up built and turns it back on): importing TensorFlow and loading a SavedModel create
# ~300k long-lived objects, and the collections they trigger walk them again and again.
gc.disable()

from mlops.serving.server import main  # noqa: E402 - after gc.disable, on purpose

code = main()
sys.stdout.flush()
sys.stderr.flush()
# TensorFlow's native teardown can crash at interpreter exit; the server is done by now.
os._exit(code)
