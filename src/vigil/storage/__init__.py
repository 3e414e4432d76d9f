"""The storage interface every engine implements (embedded tsdb today, remote engines later).

Import from the submodules: `interface` (the protocol and result types) and `errors`.
"""
