"""Updates found by fuzzing corrupted Yjs updates, shared by the YDoc and SharedState tests."""

# Applies cleanly to an empty Doc, but merged into a Doc holding POISON_BASE it leaves yrs
# panicking (Option::unwrap on None).
POISON_BASE = bytes.fromhex(
    "020115000801016c017c3f8000000303002801016d026b32017c3f8000000801016c027c3f800000"
    "7c3f8000002801016d026b300177017300"
)
POISON = bytes.fromhex("010115018815400001863f80000000")

# Applies to a Doc holding BAD_BASE without a panic, but what it integrates encodes to bytes
# yrs cannot decode (a peer would refuse this node's whole document).
BAD_BASE = bytes.fromhex(
    "0302030008010161017c40c00000880100017c4000000002020008010161017c00000000880301017c0000"
    "0000010100880300017c4040000000"
)
BAD = bytes.fromhex(
    "0302030008010161017c40c00000880100017c4000000002020008010161017c00000000880301017c0000"
    "0000020100880300017c400000880201017c0000000000"
)
