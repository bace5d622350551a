"""ThingSpace callbacks: hints of a campaign's progress, kept raw, applied later.

`parsing` turns an already-decoded payload into campaign and device updates
(pure, never raises); `receiver` is the HTTP endpoint that keeps every raw
payload before answering. Nothing is imported here, so importing the pure
parser never pulls in Starlette or the store.
"""
