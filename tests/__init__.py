"""fota-bot's tests.

A regular package (not a namespace one): some installed distributions ship a top-level
`tests` package of their own (apimatic-core, under Verizon's SDK), which would otherwise
win the import of `tests.support`.
"""
