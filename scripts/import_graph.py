#!/usr/bin/env python3
"""import_graph.py REV: which top-level modules of src/ each module imports
(`crate::X` outside comments and test code), at git revision REV."""
import subprocess,re,sys,collections
rev=sys.argv[1]
files=subprocess.run(['git','ls-tree','-r','--name-only',rev,'src'],capture_output=True,text=True).stdout.split()
g=collections.defaultdict(set)
for f in files:
    if not f.endswith('.rs') or f.startswith('src/bin/'): continue
    base=f.split('/')[-1]
    if base=='tests.rs' or base.endswith('_tests.rs') or base=='fixtures.rs': continue
    parts=f[4:].split('/')
    top=parts[0][:-3] if parts[0].endswith('.rs') else parts[0]
    if top in ('lib',): continue
    text=subprocess.run(['git','show',f'{rev}:{f}'],capture_output=True,text=True).stdout
    text=text.split('\n#[cfg(test)]\nmod tests {')[0]
    for line in text.split('\n'):
        l=line.strip()
        if l.startswith('//'): continue
        for m in re.finditer(r'crate::([a-z_]+)',l):
            t=m.group(1)
            if t!=top: g[top].add(t)
for k in sorted(g): print(f"{k} -> {', '.join(sorted(g[k]))}")
