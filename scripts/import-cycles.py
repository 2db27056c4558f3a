#!/usr/bin/env python3
"""Fail when a crate's modules import each other in a circle (`make lint`).

For each `src/` directory given, every `.rs` file is a module (`report/plots.rs` is
`report::plots`); its edges are the `crate::…` and `super::…` paths in its non-test code
(up to the first `#[cfg(test)]`, comments removed), each resolved to the longest module
it names. Any cycle is printed and the exit status is 1.
"""
import re
import sys
from pathlib import Path


def modules(src):
    """Module path (tuple) -> non-test code of its file."""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("").parts
        if rel[0] == "bin" or rel in (("lib",), ("main",)):
            continue
        if rel[-1] == "mod":
            rel = rel[:-1]
        text = f.read_text()
        cut = text.find("#[cfg(test)]")
        text = text if cut < 0 else text[:cut]
        out[rel] = re.sub(r"//.*", "", text)
    return out


def resolve(path, known):
    """The longest known module that `path` (a tuple of names) starts with."""
    for n in range(len(path), 0, -1):
        if path[:n] in known:
            return path[:n]
    return None


def edges(mods):
    graph = {}
    for m, text in mods.items():
        deps = set()
        for p in re.findall(r"\bcrate((?:::\w+)+)", text):
            deps.add(resolve(tuple(p.split("::")[1:]), mods))
        for p in re.findall(r"\bsuper((?:::\w+)+)", text):
            deps.add(resolve(m[:-1] + tuple(p.split("::")[1:]), mods))
        graph[m] = {d for d in deps if d and d != m and m[: len(d)] != d}
    return graph


def cycles(graph):
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found


def main(dirs):
    bad = 0
    for d in dirs:
        for c in cycles(edges(modules(Path(d)))):
            print(f"{d}: import cycle: " + " -> ".join("::".join(m) for m in c))
            bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
