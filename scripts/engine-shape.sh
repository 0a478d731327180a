#!/bin/sh
# Measures the shape of berth-engine (issue 13): long files, long
# functions, module dependency edges and the circles among them, and the
# number of unit tests. Heuristic (text-based), but stable enough to
# compare before and after a refactor.
# Usage: scripts/engine-shape.sh [src-dir] [--edges]
set -eu
SRC=${1:-crates/berth-engine/src}
EDGES=${2:-}
exec python3 - "$SRC" "$EDGES" <<'PY'
import os, re, sys
src, show_edges = sys.argv[1], sys.argv[2] == "--edges"
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".rs"))

def module_of(path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return "::".join(["crate"] + rel)

def non_test_lines(text):
    """Lines up to the first `#[cfg(test)]` module (tests sit at the end)."""
    lines = text.split("\n")
    for i, l in enumerate(lines):
        if l.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines

mods = {module_of(f): f for f in files}

print("== non-test files over 800 lines")
for f in files:
    n = len(non_test_lines(open(f).read()))
    if n > 800:
        print(f"  {n:5}  {os.path.relpath(f, src)}")

print("== functions over 100 lines (non-test)")
fn_re = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
long_fns = []
for f in files:
    lines = non_test_lines(open(f).read())
    for i, l in enumerate(lines):
        m = fn_re.match(l)
        if not m:
            continue
        ind = m.group(1)
        # the body ends at a `}` alone at the fn's indent
        for j in range(i + 1, len(lines)):
            if lines[j] == ind + "}" or (lines[j].startswith(ind + "}") and lines[j].strip() == "}"):
                break
            if lines[j].startswith(ind) and fn_re.match(lines[j]) and fn_re.match(lines[j]).group(1) == ind:
                j = None
                break
        else:
            j = None
        if j is not None and j - i + 1 > 100:
            long_fns.append((j - i + 1, os.path.relpath(f, src), m.group(7)))
for n, f, name in sorted(long_fns, reverse=True):
    print(f"  {n:5}  {f}: {name}")

# Dependency edges between modules (files).
def resolve(mod, path):
    """Longest known module that `path` (a list of segments) names."""
    parts = mod.split("::")
    segs = list(path)
    while segs and segs[0] in ("super", "self", "crate"):
        s = segs.pop(0)
        if s == "crate":
            parts = ["crate"]
        elif s == "super":
            parts = parts[:-1]
    cand = parts + segs
    for k in range(len(cand), 0, -1):
        m = "::".join(cand[:k])
        if m in mods:
            return m
    return None

path_re = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
use_re = re.compile(r"\buse\s+((?:crate|super)::[^;]*);", re.S)
edges = {m: set() for m in mods}
for m, f in mods.items():
    text = "\n".join(non_test_lines(open(f).read()))
    targets = []
    for u in use_re.findall(text):
        u = re.sub(r"\s+", "", u)
        # expand one level of braces: a::{b, c::d}
        mm = re.match(r"(.*?)::\{(.*)\}$", u)
        if mm:
            head, body = mm.groups()
            depth, cur, items = 0, "", []
            for ch in body:
                if ch == "," and depth == 0:
                    items.append(cur); cur = ""
                    continue
                depth += ch == "{"; depth -= ch == "}"
                cur += ch
            items.append(cur)
            for it in items:
                it = it.split("::{")[0].split(" as ")[0]
                if it and it != "self":
                    targets.append(head + "::" + it)
                else:
                    targets.append(head)
        else:
            targets.append(u.split(" as ")[0])
    targets += path_re.findall(re.sub(use_re, "", text))
    for t in targets:
        segs = t.split("::")
        if segs[-1] in ("*",):
            segs = segs[:-1]
        r = resolve(m, segs)
        # `self::x` and `mod x;` children are this module's own business.
        if r and r != m and not r.startswith(m + "::"):
            edges[m].add(r)
if show_edges:
    print("== module dependency edges")
    for m in sorted(edges):
        for t in sorted(edges[m]):
            print(f"  {m} -> {t}")
n_edges = sum(len(v) for v in edges.values())
print(f"== {n_edges} module dependency edges (--edges lists them)")

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        sccs.append(comp)
for v in sorted(edges):
    if v not in index:
        strong(v)
# Edges to a module's own submodules were left out above: a parent using
# its children is fine; issue 13 is about circles between sibling files.
circles = [sorted(c) for c in sccs if len(c) > 1]
print(f"== circles (strongly connected components): {len(circles)}")
for c in circles:
    print("  " + " <-> ".join(m.replace("crate::", "") for m in c))

tests = 0
for f in files:
    tests += len(re.findall(r"#\[test\]", open(f).read()))
print(f"== #[test] fns in the engine: {tests}")
PY
