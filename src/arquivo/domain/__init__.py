"""The domain API: one module per aggregate, each a facade over its statements.

A facade (``Preferences``, ``Conversations``...) validates input, opens a unit of work on
the store and runs the aggregate's statements on it; the statement functions take a
:class:`~arquivo.db.fastpath.Driver`, never commit, and return plain values.
"""
