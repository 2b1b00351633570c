"""Small helpers every layer may use; none of them imports another part of the package.

``backoff`` (full-jitter waits), ``deadline`` (one time budget across steps), ``extras`` (one line for a missing optional dependency), ``logs`` (throttled log lines, escaped for one line), ``moved`` (the import paths of
modules that moved into folders).
"""
