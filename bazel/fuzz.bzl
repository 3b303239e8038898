"""fuzz_target: one fuzz driver, two builds.

For tests/fuzz/<name>.c (which defines LLVMFuzzerTestOneInput) with a
checked-in corpus tests/fuzz/corpus/<name>/:

  <name>_replay  a cc_test run by a plain `bazel test //...` (gcc): the driver
                 linked with //tests/fuzz:replay_main, run over every corpus
                 file plus deterministic mutations of each. Under
                 --config=fuzz the same test is the libFuzzer binary run over
                 the corpus files (libFuzzer executes file arguments once).
  <name>         tagged manual: under --config=fuzz the libFuzzer binary to
                 fuzz with (bazel-bin/tests/fuzz/<name> CORPUS_DIR
                 -max_total_time=60); without it a replay binary.
data: files the driver reads, by paths relative to the workspace root
(the replay test's working directory, and where tests/fuzz/run.sh runs
the fuzzers).
"""

load("//bazel:defs.bzl", "proxy_binary", "proxy_test")

def _replay_main(replay_main):
    # libFuzzer brings its own main(); the replay main is only for builds
    # without it.
    return select({
        "//bazel:fuzzing": [],
        "//conditions:default": [replay_main],
    })

def fuzz_target(name, srcs, deps = [], data = [], corpus = None, replay_main = "//tests/fuzz:replay_main", **kwargs):
    corpus = corpus or "corpus/" + name
    native.filegroup(
        name = name + "_corpus",
        srcs = native.glob([corpus + "/*"]),
    )
    proxy_test(
        name = name + "_replay",
        srcs = srcs,
        deps = deps + _replay_main(replay_main),
        data = data + [":" + name + "_corpus"],
        args = ["$(locations :" + name + "_corpus)"],
        size = "small",
        **kwargs
    )
    proxy_binary(
        name = name,
        srcs = srcs,
        deps = deps + _replay_main(replay_main),
        data = data,
        tags = ["manual"],
        **kwargs
    )
