"""Small helpers every layer may use; none of them imports another part of the package.

``logs`` (throttled, escaped log lines; URLs without secrets), ``backoff`` (full-jitter
delays), ``deadline`` (one time budget across several steps), ``moved`` (the import paths
of modules that moved into folders).
"""
