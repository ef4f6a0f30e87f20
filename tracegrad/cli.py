"""The `tracegrad` command line: `dump` shows each compiled step at every stage, `cache` the kernel cache."""
from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
import traceback

STAGES = ("traced", "adjoint", "optimized", "kernel", "replay")
SOURCE_STAGES = ("kernel", "replay")  # shown as Python source, whatever the --format


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tracegrad` command."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="tracegrad", description="tracegrad: PyTorch-style tensors and autograd, compiled training steps.")
    parser.add_argument("--version", action="version", version=f"tracegrad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dump = commands.add_parser(
        "dump", help="run a script and print the IR of each compiled step",
        description="Run SCRIPT.py (with ARGS) and print, for each compiled function it traces, the IR at "
                    "each stage: traced (the step's own ops), adjoint (with the backward), optimized "
                    "(after the passes), kernel (generated code, with a code-generating backend), replay (the "
                    "generated Python that feeds each call's tensors to the backend and hands back the results). "
                    "Options go before SCRIPT.py; everything after it is passed to the script.")
    dump.add_argument("script", metavar="SCRIPT.py", help="the Python script to run")
    dump.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the script")
    dump.add_argument("--stage", choices=STAGES + ("all",), default="all", help="which stage (default: all)")
    dump.add_argument("--format", choices=("text", "dot", "json"), default="text", help="output form")
    dump.add_argument("-o", "--output", metavar="DIR", help="write one file per graph and stage into DIR")
    dump.add_argument("--backend", help="the backend of compiled functions that don't name one "
                                        "(e.g. numba, to see its generated code at --stage kernel)")
    cache = commands.add_parser(
        "cache", help="show or clear the disk cache of compiled kernels",
        description="The kernel cache lives in $TRACEGRAD_CACHE_DIR (default ~/.cache/tracegrad). 'info' shows "
                    "the folders in use, what they hold and how often kernels were loaded or compiled; 'clear' "
                    "deletes every cached kernel.")
    cache.add_argument("action", choices=("info", "clear"))
    return parser


def _stage_graph(variant, stage: str):
    """(graph, nodes to show, header) of one stage of a variant."""
    traced = variant.traced
    if stage == "traced":
        primal = [n for n in traced.nodes if not n.adjoint]
        return traced, primal, f"traced: {len(primal)} nodes"
    if stage == "adjoint":
        adjoint = sum(n.adjoint for n in traced.nodes)
        return traced, traced.nodes, (f"adjoint: {adjoint} adjoint nodes; {variant.trace.pruned} forward nodes "
                                      f"pruned (no path from a leaf that requires grad to the loss)")
    report = ", ".join(f"{k} -{v}" for k, v in variant.pass_report.items())
    return variant.trace.graph, variant.trace.graph.nodes, f"optimized: {len(variant.trace.graph.nodes)} nodes ({report})"


def _render(variant, stage: str, fmt: str) -> str:
    from .ir.printer import to_dot, to_json
    if stage == "kernel":
        return variant.kernel_source or "# no kernel: the interpreter backend executes the optimized graph directly"
    if stage == "replay":
        return variant.replay.source + "\n\n" + getattr(variant.replay, "fast_source", "# no fast path\n")
    graph, nodes, header = _stage_graph(variant, stage)
    if fmt == "dot":
        return to_dot(graph, nodes)
    if fmt == "json":
        return to_json(graph, nodes)
    return f"# {header}\n" + graph.text(nodes=nodes, mark_adjoint=stage == "adjoint")


@contextlib.contextmanager
def _as_main(script: str, args: list[str]):
    """Run code as `python SCRIPT.py ARGS` would: the script's folder first on sys.path, sys.argv = [SCRIPT.py, *ARGS]."""
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _run_script(script: str, args: list[str]) -> BaseException | None:
    """Run the script as __main__; returns what made it fail (an exception, or SystemExit with a nonzero status)."""
    with _as_main(script, args):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            return None if e.code in (None, 0) else e
        except Exception as e:
            return e
    return None


def _print_traceback(error: BaseException, script: str) -> None:
    """The script's traceback as Python prints it: from the script's own frames on, without tracegrad's and runpy's."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(error.with_traceback(tb))


def dump(args) -> int:
    """Run the script, collect every traced variant, print or write its stages (also those traced before the
    script failed; its traceback follows, exit status 1)."""
    from .compiler.compile import OBSERVERS
    if not os.path.isfile(args.script):
        raise UserError(f"no such script: {args.script}")
    if args.backend:
        os.environ["TRACEGRAD_BACKEND"] = args.backend
    events: list = []
    OBSERVERS.append(lambda name, event: events.append((name, event)))
    try:
        failure = _run_script(args.script, args.args)
    finally:
        OBSERVERS.pop()
    stages = STAGES if args.stage == "all" else (args.stage,)
    variants = [(name, e) for name, e in events if not isinstance(e, str)]
    for name, reason in ((n, e) for n, e in events if isinstance(e, str)):
        print(f"# {name}: runs eagerly: {reason}", file=sys.stderr)
    if not variants:
        print("no compiled step was traced (a compiled function is traced on its second call)", file=sys.stderr)
    ext = {"text": "ir", "dot": "dot", "json": "json"}[args.format]
    for i, (name, variant) in enumerate(variants):
        for stage in stages:
            body = _render(variant, stage, args.format if stage not in SOURCE_STAGES else "text")
            if args.output:
                os.makedirs(args.output, exist_ok=True)
                suffix = "py" if stage in SOURCE_STAGES else ext
                with open(os.path.join(args.output, f"{name}.{i}.{stage}.{suffix}"), "w") as f:
                    f.write(body + "\n")
            else:
                print(f"=== {name} (variant {i}) · {stage} ===\n{body}\n")
    if args.output and variants:
        print(f"wrote {len(variants) * len(stages)} files to {args.output}")
    if isinstance(failure, SystemExit):
        raise UserError(f"{args.script} exited with status {failure.code}")
    if failure is not None:
        sys.stdout.flush()
        _print_traceback(failure, args.script)
        return 1
    return 0


def cache(args) -> int:
    """`tracegrad cache info|clear`."""
    from .backends.numba_cpu import cache as kernel_cache
    if args.action == "clear":
        print(f"removed {kernel_cache.clear()} kernels from {kernel_cache.cache_dir()}")
        return 0
    info = kernel_cache.info()
    lines = [f"path: {info['path']}"] + [f"folder in use: {path} ({kind})" for path, kind in info["folders"]]
    if not any(kind == "read-write" for _, kind in info["folders"]):
        lines.append("new kernels go to: a private temporary folder of each process, removed at exit")
    lines += [f"kernels: {info['kernels']}", f"files: {info['files']}", f"size: {info['bytes'] / 1e6:.1f} MB",
              f"loaded from the cache: {info['recorded_hits']} kernels, compiled: {info['recorded_misses']} "
              f"(by the processes that used it)"]
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 user error, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return dump(args) if args.command == "dump" else cache(args)
    except UserError as e:
        print(f"tracegrad {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
