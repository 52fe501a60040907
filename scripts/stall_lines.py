#!/usr/bin/env python3
"""Offline: where one kernel's stall samples and executed instructions sit in the CUDA source.

Joins an Nsight Compute per-instruction table (scripts/gpu_stalls.sh with KEEP=name) with a local disassembly
of the same kernel built with -lineinfo (nvdisasm -gi), by SASS offset, and prints the samples and warp
instructions per source line of the kernel's own file (inlined calls count at their call site) and per
innermost line, and optionally per line of one FILE (its outermost frame there). The two builds must be the same code: the script reports how many opcodes disagree.
Usage: stall_lines.py TABLE.csv DISASM.sass KERNEL_SUBSTRING [TOP [FILE]]
"""
import csv
import re
import sys
from collections import defaultdict

table, disasm, kern = sys.argv[1:4]
top = int(sys.argv[4]) if len(sys.argv) > 4 else 30
focus = sys.argv[5] if len(sys.argv) > 5 else ''

rows = list(csv.reader(open(table)))
hi = next(i for i, r in enumerate(rows) if 'Source' in r)
hdr, data = rows[hi], [r for r in rows[hi + 1:] if len(r) == len(rows[hi])]
num = lambda x: float(x.replace(',', '') or 0)
col = {h: i for i, h in enumerate(hdr)}
samp, execd = col['Warp Stall Sampling (All Samples)'], col['Instructions Executed']
base = int(data[0][col['Address']], 16)
prof = {int(r[col['Address']], 16) - base: r for r in data}

chain, block, ins = [], [], {}  # chain: the frames of the next instruction, innermost first
inside = False
sections = [l for l in open(disasm) if l.startswith('//-----') and kern in l]
if len(sections) != 1:  # e.g. both instantiations of a template: name one (step_d_bf16_kernelILi128)
    sys.exit(f'{len(sections)} kernels match {kern!r}: {[l.split()[1] for l in sections]}')
for line in open(disasm):
    if line.startswith('//-----'):
        inside = kern in line
        continue
    if not inside:
        continue
    m = re.match(r'\s*//## File "([^"]+)", line (\d+)', line)
    if m:
        block.append(f'{m.group(1).split("/")[-1]}:{m.group(2)}')
        if 'inlined at' not in line:  # a block ends on the kernel's own line
            chain, block = block, []
        continue
    m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+([^;]*);', line)
    if m:
        ins[int(m.group(1), 16)] = (m.group(2).strip(), chain)

agree = sum(1 for a, (t, _) in ins.items() if a in prof and prof[a][col['Source']].split()[0:1] == t.split()[0:1])
print(f'{len(ins)} instructions disassembled, {len(prof)} profiled, {agree} with the same first token')
tot_s = sum(num(r[samp]) for r in data) or 1.0
tot_e = sum(num(r[execd]) for r in data) or 1.0
views = {'kernel line': lambda c: c[-1], 'innermost line': lambda c: c[0]}
if focus:  # the outermost frame in that file (instructions outside it: their kernel line)
    views[f'line of {focus}'] = lambda c: next((f for f in reversed(c) if f.startswith(focus + ':')), c[-1])
for name, key in views.items():
    d = defaultdict(lambda: [0.0, 0.0])
    for a, (t, c) in ins.items():
        if a in prof and c:
            d[key(c)][0] += num(prof[a][samp])
            d[key(c)][1] += num(prof[a][execd])
    print(f'== by {name}: samples %, warp instructions %')
    for k, (s_, e) in sorted(d.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f'  {s_ / tot_s:6.1%} {e / tot_e:6.1%}  {k}')
