#!/usr/bin/env python3
"""include_graph.py - checks ponder's include graph against the module map.

  include_graph.py SOURCE_ROOT [--dot]

Reads every .c/.h/.cu file of the product folders (engine/base, engine, kernels,
analysis, store, remote, cli, tui), resolves each quoted #include to the file it names,
and fails (exit 1, one line per finding) when
  * a folder includes a header of a folder the module map does not allow
    (docs/architecture.md: tui -> cli, remote, analysis, store, engine; cli -> remote,
    analysis, store, engine; remote -> engine; analysis -> engine; store -> engine/base;
    engine -> engine/base, and only engine/backend_cuda.c -> kernels; engine/base ->
    nothing), or
  * the units form a circle: a unit is a header with its .c/.cu file (capture.h +
    capture.c) and its private X_internal.h, and unit A depends on unit B when A's files
    include B's header.
--dot prints the unit graph in Graphviz format instead."""
import os
import re
import sys

FOLDERS = ["engine/base", "engine", "kernels", "analysis", "store", "remote", "cli", "tui"]
ALLOWED = {
    "engine/base": set(),
    "engine": {"engine/base"},
    "kernels": set(),
    "analysis": {"engine", "engine/base"},
    "store": {"engine/base"},
    "remote": {"engine", "engine/base"},
    "cli": {"remote", "analysis", "store", "engine", "engine/base"},
    "tui": {"cli", "remote", "analysis", "store", "engine", "engine/base"},
}
# File-level exceptions the module map names: the CUDA backend is the kernels' only caller;
# the executable's own files (cli/main.c, cli/cli_table.c: not part of the cli library)
# see the workbench's entry points (tui.h) when it is built.
EXTRA = {("engine/backend_cuda.c", "kernels"), ("cli/main.c", "tui"), ("cli/cli_table.c", "tui")}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def unit_of(rel):
    u = os.path.splitext(rel)[0]
    return u[:-len("_internal")] if u.endswith("_internal") else u


def folder_of(rel):
    d = os.path.dirname(rel)
    return d if d in FOLDERS else None


def main():
    root = sys.argv[1]
    dot = "--dot" in sys.argv
    files = {}
    for f in FOLDERS:
        d = os.path.join(root, f)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h", ".cu")):
                files[f + "/" + name] = open(os.path.join(d, name), encoding="utf-8").read()
    # headers by bare name (ponder includes headers by name; names are unique)
    by_name = {}
    for rel in files:
        if rel.endswith(".h"):
            name = os.path.basename(rel)
            if name in by_name:
                print(f"header name used twice: {by_name[name]} and {rel}")
                return 1
            by_name[name] = rel
    problems = []
    unit_edges = {}
    for rel, text in files.items():
        src_folder = folder_of(rel)
        unit = unit_of(rel)
        unit_edges.setdefault(unit, set())
        for inc in INCLUDE.findall(text):
            target = by_name.get(os.path.basename(inc))
            if target is None:
                continue  # config.h and generated files
            dst_folder = folder_of(target)
            if dst_folder != src_folder and dst_folder not in ALLOWED[src_folder] and \
                    (rel, dst_folder) not in EXTRA:
                problems.append(f"{rel}: includes {target} ({src_folder} -> {dst_folder} "
                                "is not in the module map)")
            dst_unit = unit_of(target)
            if dst_unit != unit:
                unit_edges[unit].add(dst_unit)
    if dot:
        print("digraph ponder {")
        for u, vs in sorted(unit_edges.items()):
            for v in sorted(vs):
                print(f'  "{u}" -> "{v}";')
        print("}")
        return 0
    # circles: strongly connected components with more than one unit (Tarjan)
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(unit_edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(unit_edges):
        if v not in index:
            visit(v)
    for comp in sccs:
        problems.append("include circle: " + " <-> ".join(comp))
    for p in problems:
        print(p)
    if not problems:
        n_edges = sum(len(v) for v in unit_edges.values())
        print(f"ok: {len(unit_edges)} units, {n_edges} edges, no circle, "
              "every edge in the module map")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
