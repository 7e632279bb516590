"""fworker: a Flamenco render-farm Worker.

gevent must patch the standard library before anything else imports
``socket``, ``ssl`` or ``threading`` (requests and urllib3 among them), so the
package does it on first import.  Every entry point imports ``fworker`` first.
"""
from gevent import monkey as _monkey

_monkey.patch_all()

__version__ = "0.1.0"
