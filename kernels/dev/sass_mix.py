#!/usr/bin/env python3
"""Opcode histogram of selected kernels in `cuobjdump -sass` output (read from stdin): for each kernel whose
mangled name contains one of the argv substrings, the total instruction count and the 25 commonest opcodes,
plus the counts inside its innermost loops (backward branches). A quick look at what a kernel's hot loop
issues (MUFU.EX2 vs FFMA vs LDS) without a profiler."""
import collections
import re
import sys

text = sys.stdin.read()
wanted = sys.argv[1:]
for block in re.split(r"\n\s+Function : ", text)[1:]:
    name = block.split("\n", 1)[0].strip()
    if wanted and not any(w in name for w in wanted):
        continue
    ins = re.findall(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);", block)
    addr = [int(a, 16) for a, _, _ in ins]
    ops = [o for _, o, _ in ins]
    print(f"== {name}  ({len(ops)} instructions)")
    print("   all: " + ", ".join(f"{k} {v}" for k, v in collections.Counter(o.split('.')[0] + ('.' + o.split('.')[1] if o.startswith('MUFU') else '') for o in ops).most_common(25)))
    # loops: a BRA whose target address is at or before the branch
    for i, (a, o, rest) in enumerate(ins):
        if o.startswith("BRA"):
            m = re.search(r"0x([0-9a-f]+)", rest)
            if m and int(m.group(1), 16) <= int(a, 16):
                lo = int(m.group(1), 16)
                body = [ops[j] for j in range(len(ops)) if lo <= addr[j] <= int(a, 16)]
                c = collections.Counter(x.split('.')[0] + ('.' + x.split('.')[1] if x.startswith('MUFU') else '') for x in body)
                if len(body) > 40:
                    print(f"   loop @{lo:#x}-{int(a, 16):#x} ({len(body)}): " + ", ".join(f"{k} {v}" for k, v in c.most_common(14)))
