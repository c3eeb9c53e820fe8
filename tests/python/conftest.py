"""Load the generated Python bindings next to a copy of the built library."""
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.environ.get("SIPSIMPLE_LIB", os.path.join(ROOT, "target", "debug", "libsipsimple.so"))

_pkg = tempfile.mkdtemp(prefix="sipsimple-py-")
shutil.copy(os.path.join(ROOT, "bindings", "python", "sipsimple.py"), _pkg)
shutil.copy(LIB, _pkg)
sys.path.insert(0, _pkg)
