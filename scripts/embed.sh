#!/usr/bin/env bash
# embed.sh NAME IN OUT — writes OUT, a C header that holds the bytes of IN
# as `static const unsigned char NAME[]` (with a NUL after them) and
# `static const unsigned int NAME_len` (without it): what `xxd -i` makes,
# from coreutils' od and sed alone, so the build needs nothing more. The
# Makefile uses it to compile the big screen's page into the binary.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: scripts/embed.sh NAME IN OUT" >&2; exit 2; }
name=$1 in=$2 out=$3
len=$(wc -c <"$in")
{
    echo "/* Generated from $in by scripts/embed.sh: edit $in instead. */"
    echo "static const unsigned char ${name}[] = {"
    od -An -v -tx1 "$in" | sed -E 's/ ([0-9a-f]{2})/0x\1,/g'
    echo "0x00};"
    echo "static const unsigned int ${name}_len = ${len}u;"
} >"$out.tmp"
mv "$out.tmp" "$out"
