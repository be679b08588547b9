#!/usr/bin/env python3
"""remote_compare.py - compares two JSONL outputs of ponder (in process vs. through a
remote engine): the same lines, the same integers and strings, numbers within TOL
(absolute, relative for magnitudes above 1).

  remote_compare.py A B [--tol 1e-6] [--ignore KEY,...] [--sort KEY] [--skip KEY]

--ignore drops keys anywhere in the objects; --skip drops whole lines that have KEY at
the top level; --sort orders both files' lines by that top-level key first. Prints the
first difference (file line, path, the two values) and exits 1; prints the count of
compared numbers and exits 0 when they agree."""
import json
import sys


def load(path, skip, sort_key):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if skip and any(k in obj for k in skip):
                continue
            rows.append(obj)
    if sort_key:
        rows.sort(key=lambda o: o.get(sort_key, 0))
    return rows


def main():
    args = sys.argv[1:]
    tol, ignore, skip, sort_key = 1e-6, set(), set(), None
    files = []
    i = 0
    while i < len(args):
        if args[i] == "--tol":
            tol = float(args[i + 1])
            i += 2
        elif args[i] == "--ignore":
            ignore |= set(args[i + 1].split(","))
            i += 2
        elif args[i] == "--skip":
            skip |= set(args[i + 1].split(","))
            i += 2
        elif args[i] == "--sort":
            sort_key = args[i + 1]
            i += 2
        else:
            files.append(args[i])
            i += 1
    a, b = load(files[0], skip, sort_key), load(files[1], skip, sort_key)
    if len(a) != len(b):
        print(f"{len(a)} lines in {files[0]}, {len(b)} in {files[1]}")
        return 1
    count = [0]

    def cmp(x, y, path):
        if isinstance(x, dict) and isinstance(y, dict):
            keys = (set(x) | set(y)) - ignore
            for k in sorted(keys):
                if k not in x or k not in y:
                    return f"{path}.{k}: only in one file"
                r = cmp(x[k], y[k], f"{path}.{k}")
                if r:
                    return r
            return None
        if isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                return f"{path}: {len(x)} vs {len(y)} entries"
            for j, (p, q) in enumerate(zip(x, y)):
                r = cmp(p, q, f"{path}[{j}]")
                if r:
                    return r
            return None
        if isinstance(x, float) or isinstance(y, float):
            if x is None or y is None:
                return f"{path}: {x!r} vs {y!r}"
            count[0] += 1
            if abs(x - y) > tol * max(1.0, abs(x)):
                return f"{path}: {x!r} vs {y!r} (tolerance {tol})"
            return None
        if x != y:
            return f"{path}: {x!r} vs {y!r}"
        return None

    for n, (x, y) in enumerate(zip(a, b)):
        r = cmp(x, y, f"line {n + 1}")
        if r:
            print(r)
            return 1
    print(f"ok: {len(a)} lines, {count[0]} numbers agree within {tol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
