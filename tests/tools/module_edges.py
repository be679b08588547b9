#!/usr/bin/env python3
"""module_edges.py - the build itself refuses includes outside the module map.

  module_edges.py BUILD_ROOT

For each product library it takes the compiler command meson uses for one of the
library's own sources (compile_commands.json), swaps the source for a probe file that
includes one header, and compiles it: a header of an allowed dependency must compile, a
header of a folder the library may not see must fail as not found (gcc: "No such file",
clang: "file not found"). Exit 1 on any unexpected result, printing the command's folder,
the header and the compiler's output."""
import json
import os
import shlex
import subprocess
import sys
import tempfile

# library folder -> (allowed header, forbidden headers)
CASES = {
    "engine/base": ("status.h", ["model.h", "store.h", "policies.h", "cli.h", "remote.h"]),
    "engine": ("trace.h", ["store.h", "policies.h", "steps.h", "cli.h", "app.h",
                           "pd_cuda.h", "remote.h"]),
    "store": ("trace.h", ["model.h", "session.h", "policies.h", "cli.h", "app.h",
                          "remote.h"]),
    "analysis": ("session.h", ["store.h", "cli.h", "app.h", "remote.h"]),
    # remote/ sees engine/ and engine/base/ (its private libraries' headers too: curl,
    # microhttpd, jansson), nothing of analysis, store, cli or the workbench
    "remote": ("session.h", ["store.h", "policies.h", "score.h", "cli.h", "app.h",
                             "pd_cuda.h"]),
    "cli": ("store.h", ["app.h", "live.h", "panes.h"]),
    "tui": ("cli.h", ["pd_cuda.h"]),
}
# folders whose library a build may leave out (a feature switched off)
OPTIONAL = {"tui", "remote"}


def main():
    build = sys.argv[1]
    with open(os.path.join(build, "compile_commands.json"), encoding="utf-8") as f:
        cmds = json.load(f)
    failures = 0
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for folder, (allowed, forbidden) in CASES.items():
            entry = None
            for c in cmds:
                src = os.path.normpath(os.path.join(c["directory"], c["file"]))
                if os.path.dirname(src).endswith("/" + folder) and src.endswith(".c") and \
                        "/tests/" not in src:
                    entry = c
                    break
            if entry is None:
                if folder in OPTIONAL:
                    continue  # a build without the workbench or remote engines
                print(f"{folder}: no compile command found")
                failures += 1
                continue
            args = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
            # drop the output/dependency options and the source; compile a probe instead
            out, skip = [], False
            for a in args:
                if skip:
                    skip = False
                    continue
                if a in ("-o", "-MF", "-MQ", "-MT", "-c"):
                    skip = a != "-c"
                    continue
                if a.endswith(entry["file"]) or a == entry["file"]:
                    continue
                out.append(a)
            # a library's own files see their folder through the same-directory rule
            src_root = os.path.normpath(os.path.join(entry["directory"],
                                                     os.path.dirname(entry["file"])))
            out.append("-I" + src_root)
            for header in [allowed] + forbidden:
                probe = os.path.join(tmp, "probe.c")
                with open(probe, "w", encoding="utf-8") as p:
                    p.write(f'#include "{header}"\nint pd_probe(void);\n'
                            'int pd_probe(void) { return 0; }\n')
                r = subprocess.run(out + ["-c", probe, "-o", os.path.join(tmp, "probe.o")],
                                   cwd=entry["directory"], capture_output=True, text=True)
                checked += 1
                want_ok = header == allowed
                if want_ok and r.returncode != 0:
                    print(f"{folder}: '{header}' should compile:\n{r.stderr}")
                    failures += 1
                elif not want_ok and (r.returncode == 0 or not ("No such file" in r.stderr or
                                                        "file not found" in r.stderr)):
                    print(f"{folder}: '{header}' must not be visible (rc {r.returncode}):\n"
                          f"{r.stderr}")
                    failures += 1
    if failures == 0:
        print(f"ok: {checked} probe compiles, every forbidden include refused by the build")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
