#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes a regedit 5.00 .reg file with KEYS keys and 3 values per key (UTF-8) to stdout.

Shape: HKEY_LOCAL_MACHINE\\BENCH\\Group<g>\\Key<k>, 100 keys per group (the group keys
are listed too); values: a REG_SZ,
a DWORD and a 40-byte REG_BINARY per key.
"""
import sys

keys = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
out = sys.stdout
out.write("Windows Registry Editor Version 5.00\n\n")
for i in range(keys):
    g = i // 100
    if i % 100 == 0:
        # hivexregedit --merge needs every parent key listed before its children.
        out.write(f"[HKEY_LOCAL_MACHINE\\BENCH\\Group{g:04d}]\n\n")
    out.write(f"[HKEY_LOCAL_MACHINE\\BENCH\\Group{g:04d}\\Key{i:06d}]\n")
    out.write(f"\"Name\"=\"value number {i}\"\n")
    out.write(f"\"Count\"=dword:{i:08x}\n")
    data = ",".join(f"{(i + j) & 0xff:02x}" for j in range(40))
    out.write(f"\"Blob\"=hex:{data}\n\n")
