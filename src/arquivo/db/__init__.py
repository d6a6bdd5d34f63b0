"""Database plumbing: URLs, engines, portable column types, dialect differences, migrations."""
