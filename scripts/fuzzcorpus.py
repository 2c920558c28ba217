#!/usr/bin/env python3
"""Write seed-corpus files for Go fuzz targets (go test fuzz v1 format).

Usage: fuzzcorpus.py DIR NAME VALUE [NAME VALUE ...]
VALUE is a Python bytes literal (b'...'); the file holds one []byte arg.
"""
import os, sys

def go_bytes(b: bytes) -> str:
    out = []
    for c in b:
        ch = chr(c)
        if ch == '"': out.append('\\"')
        elif ch == '\\': out.append('\\\\')
        elif ch == '\n': out.append('\\n')
        elif ch == '\r': out.append('\\r')
        elif ch == '\t': out.append('\\t')
        elif 32 <= c < 127: out.append(ch)
        else: out.append('\\x%02x' % c)
    return '[]byte("' + ''.join(out) + '")'

d = sys.argv[1]
os.makedirs(d, exist_ok=True)
args = sys.argv[2:]
for name, val in zip(args[::2], args[1::2]):
    b = eval(val)  # trusted: written by developers
    if isinstance(b, str): b = b.encode()
    with open(os.path.join(d, name), 'w') as f:
        f.write('go test fuzz v1\n' + go_bytes(b) + '\n')
