"""Pure data of QW Control cluster mode: settings, messages and their codec, SQL tables, key names.

Nothing here imports another package of the project; ``producers`` and ``workers`` import
from here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qwcontrol-cluster")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
