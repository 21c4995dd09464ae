#!/bin/sh
# Print a fingerprint of the trees an audit must never touch: type, mode, owner, inode and
# link target of every entry, plus the sha256 of every regular file. Sorted, one per line,
# so two runs can be diffed line by line. A rewrite with identical content changes the inode.
set -eu
for tree in "$@"; do
    [ -e "$tree" ] || { echo "absent $tree"; continue; }
    find "$tree" -xdev -printf 'meta %y %m %u:%g %i %p -> %l\n'
    find "$tree" -xdev -type f -exec sha256sum {} +
done | LC_ALL=C sort -u
