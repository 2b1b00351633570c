"""A module that fails while it is imported, as an application with a bug would."""

raise RuntimeError("the database URL is not set")
