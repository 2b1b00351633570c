"""Small helpers every layer may use; none of them imports another part of the package.

``backoff`` (full-jitter waits), ``logs`` (throttled log lines, escaped for one line), ``moved`` (the import paths of
modules that moved into folders).
"""
