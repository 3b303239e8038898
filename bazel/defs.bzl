"""Build macros: every project C target gets the same strict warning list."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

# C-only flags live in copts (Bazel 4 has no conlyopts); every target here is C.
WARNINGS = [
    "-std=c17",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wpointer-arith",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wvla",
    "-Wformat=2",
    "-Wno-unused-parameter",
    "-fno-strict-aliasing",
]

def proxy_library(name, copts = [], **kwargs):
    cc_library(name = name, copts = WARNINGS + copts, **kwargs)

def proxy_binary(name, copts = [], **kwargs):
    cc_binary(name = name, copts = WARNINGS + copts, **kwargs)

def proxy_test(name, copts = [], **kwargs):
    # Unit tests use cmocka, whose macros trip -Wmissing-prototypes-style
    # checks only in the harness, never in project code.
    cc_test(name = name, copts = WARNINGS + ["-Wno-missing-prototypes"] + copts, **kwargs)
