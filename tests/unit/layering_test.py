"""The layering rules of proxy/ (DESIGN.md "Shape of the code", STYLE.md).

Fails when
  - a file includes a project header of a layer it may not use,
  - a pure layer (core, policy) includes <uv.h>, <openssl/...> or
    <libconfig.h>, or <openssl/...> / <libconfig.h> / <uv.h> / <unbound.h> /
    <hiredis/...> appear outside the layers (and files) allowed to use them,
  - project includes form a circle between files,
  - a unit test does not mirror a module (tests/unit/<layer>/<m>_test.c, or
    <m>_<topic>_test.c for a module whose tests are split by theme, needs
    proxy/<layer>/<m>.c),
  - a source file of the daemon, a unit test file (tests/unit/**/*.c, *.h)
    or an e2e module (tests/e2e/*.py) grows past MAX_LINES.
Runs on the sources themselves (//proxy:sources), no build needed.
"""

import os
import re
import sys
import unittest

# Which layers each layer may include (itself always).
ALLOWED = {
    "core": set(),
    "policy": {"core"},
    "obs": set(),
    "tls": {"core", "policy"},
    "net": {"core", "obs", "tls"},
    "service": {"core", "policy", "obs", "tls", "net"},
    "session": {"core", "policy", "obs", "tls", "net", "service"},
    "app": {"core", "policy", "obs", "tls", "net", "service", "session"},
}
# System headers that only some layers (or files) may include.
SYSTEM_RULES = [
    (re.compile(r"^uv\.h$"), {"net", "service", "session", "app"}, None),
    (re.compile(r"^openssl/"), {"tls"}, None),
    (re.compile(r"^libconfig\.h$"), {"app"}, re.compile(r"^config[_a-z]*\.[ch]$")),
    (re.compile(r"^unbound\.h$"), {"net"}, re.compile(r"^resolver\.c$")),
    (re.compile(r"^hiredis/"), {"service"}, re.compile(r"^(mta_sts|tlsrpt)_redis\.c$")),
]
MAX_LINES = 800
# Test files still over MAX_LINES, each being split by its owner; remove an
# entry when its split lands, and add none.
LONG_TESTS_ALLOWED = {
    "tests/unit/tls/tls_test.c",  # the TLS engine's tests, split pending
    "tests/unit/app/config_test.c",  # the configuration's tests, split pending
}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def root():
    # The runfiles entry of this file links to the source tree (Bazel globs
    # stop at package boundaries, so the tree itself is read, not a copy).
    cand = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..")
    if not os.path.isdir(os.path.join(cand, "proxy", "core")):
        raise RuntimeError("cannot find proxy/ sources from %s" % __file__)
    return os.path.abspath(cand)


ROOT = root()


def sources():
    out = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "proxy")):
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(dirpath, f), ROOT))
    return sorted(out)


def test_sources():
    """Unit test C files and headers, and the e2e modules, relative to ROOT."""
    out = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "tests", "unit")):
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(dirpath, f), ROOT))
    e2e = os.path.join(ROOT, "tests", "e2e")
    for f in os.listdir(e2e):
        if f.endswith(".py"):
            out.append(os.path.join("tests", "e2e", f))
    return sorted(out)


def mirrored_module(layer, test_file):
    """The proxy/<layer>/<m>.c that tests/unit/<layer>/<test_file> mirrors,
    or None: <m>_test.c, or <m>_<topic>_test.c when <m>.c exists."""
    stem = test_file[: -len("_test.c")]
    cands = [stem] + [stem[:i] for i in range(len(stem) - 1, 0, -1) if stem[i] == "_"]
    for m in cands:
        path = os.path.join("proxy", layer, m + ".c")
        if os.path.exists(os.path.join(ROOT, path)):
            return path
    return None


def layer_of(path):
    parts = path.split(os.sep)
    return parts[1] if len(parts) > 2 and parts[0] == "proxy" else None


def includes(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return INCLUDE.findall(f.read())


MARKER = re.compile(rb"^(<{7} |>{7} |={7}$)", re.M)


def markers(path):
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return []
    if b"\0" in data:
        return []
    return ["%s: merge conflict marker" % os.path.relpath(path, ROOT)] if MARKER.search(data) else []


class LayeringTest(unittest.TestCase):
    def test_every_file_is_in_a_layer(self):
        for path in sources():
            self.assertIn(layer_of(path), ALLOWED, "%s is not inside a layer folder" % path)

    def test_project_includes_point_down(self):
        bad = []
        for path in sources():
            mine = layer_of(path)
            for kind, inc in includes(path):
                if kind != '"':
                    continue
                if not inc.startswith("proxy/"):
                    bad.append("%s: include \"%s\" must be rooted at proxy/" % (path, inc))
                    continue
                theirs = layer_of(inc)
                if theirs != mine and theirs not in ALLOWED.get(mine, set()):
                    bad.append("%s (%s) includes %s (%s)" % (path, mine, inc, theirs))
                if not os.path.exists(os.path.join(ROOT, inc)):
                    bad.append("%s includes %s, which does not exist" % (path, inc))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_system_headers_stay_in_their_layers(self):
        bad = []
        for path in sources():
            mine = layer_of(path)
            for kind, inc in includes(path):
                if kind != "<":
                    continue
                for pattern, layers, files in SYSTEM_RULES:
                    if pattern.search(inc) and (
                        mine not in layers
                        or (files is not None and not files.search(os.path.basename(path)))
                    ):
                        bad.append("%s (%s) includes <%s>" % (path, mine, inc))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_pure_layers_have_no_library(self):
        for path in sources():
            if layer_of(path) not in ("core", "policy"):
                continue
            for kind, inc in includes(path):
                if kind == "<":
                    self.assertFalse(
                        inc in ("uv.h", "libconfig.h", "unbound.h") or inc.startswith("openssl/"),
                        "%s is pure but includes <%s>" % (path, inc),
                    )

    def test_no_include_circle(self):
        graph = {}
        for path in sources():
            graph[path] = [inc for kind, inc in includes(path) if kind == '"' and inc != path]
        state = {}
        stack = []

        def visit(n):
            state[n] = 1
            stack.append(n)
            for m in graph.get(n, []):
                if state.get(m) == 1:
                    cycle = stack[stack.index(m):] + [m]
                    self.fail("include circle: " + " -> ".join(cycle))
                if state.get(m) is None:
                    visit(m)
            stack.pop()
            state[n] = 2

        for n in graph:
            if state.get(n) is None:
                visit(n)

    def test_unit_tests_mirror_modules(self):
        bad = []
        tests = os.path.join(ROOT, "tests", "unit")
        for dirpath, _, files in os.walk(tests):
            for f in files:
                if not f.endswith("_test.c"):
                    continue
                layer = os.path.relpath(dirpath, tests)
                if mirrored_module(layer, f) is None:
                    bad.append("tests/unit/%s/%s has no proxy/%s/%s.c" % (layer, f, layer, f[:-7]))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_files_stay_small(self):
        big = []
        for path in sources() + test_sources():
            if path in LONG_TESTS_ALLOWED:
                continue
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                n = sum(1 for _ in f)
            if n > MAX_LINES:
                big.append("%s: %d lines" % (path, n))
        self.assertEqual(big, [], "over %d lines:\n%s" % (MAX_LINES, "\n".join(big)))

    def test_long_test_allowlist_is_current(self):
        # An entry whose file is gone or back under MAX_LINES is stale.
        stale = []
        for path in sorted(LONG_TESTS_ALLOWED):
            try:
                with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                    n = sum(1 for _ in f)
            except OSError:
                n = 0
            if n <= MAX_LINES:
                stale.append("%s: %d lines, drop it from LONG_TESTS_ALLOWED" % (path, n))
        self.assertEqual(stale, [], "\n".join(stale))

    def test_no_merge_conflict_markers(self):
        # A merge resolved in a hurry must not land half-resolved.
        bad = []
        for top in ("proxy", "tests", "config", "bazel", "third_party", ".ci"):
            for dirpath, dirs, files in os.walk(os.path.join(ROOT, top)):
                dirs[:] = [d for d in dirs if not d.startswith("bazel-") and d != "corpus"]
                for f in files:
                    bad += markers(os.path.join(dirpath, f))
        for f in ("README.md", "BUILD", "WORKSPACE", ".bazelrc"):
            bad += markers(os.path.join(ROOT, f))
        self.assertEqual(bad, [], "\n".join(bad))

    def test_checker_sees_a_violation(self):
        # The rules above must be able to fail: a made-up core file that
        # includes the session layer is caught by the same logic.
        mine, theirs = "core", layer_of("proxy/session/session.h")
        self.assertNotIn(theirs, ALLOWED[mine])
        self.assertTrue(SYSTEM_RULES[1][0].search("openssl/ssl.h"))
        # The mirror rule takes a topic only after a real module's name.
        self.assertEqual(mirrored_module("core", "inbound_starttls_test.c"),
                         os.path.join("proxy", "core", "inbound.c"))
        self.assertIsNone(mirrored_module("core", "nosuchmodule_topic_test.c"))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
