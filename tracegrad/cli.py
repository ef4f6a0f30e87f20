"""The `tracegrad` command line: `dump` shows each compiled step at every stage, `cache` the kernel cache."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import runpy
import sys
import traceback

STAGES = ("traced", "adjoint", "optimized", "kernel", "replay")
SOURCE_STAGES = ("kernel", "replay")  # Python source: text, or a string field in JSON
FORMATS = ("text", "dot", "json")
SUFFIXES = {"text": "ir", "dot": "dot", "json": "json"}  # of the files -o writes, per format
FROM_BACKWARD = "from the adjoint stage"  # the name, in the traced stage, of a value the backward computes


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 1."""


class _Formatter(argparse.HelpFormatter):
    """Shows the arguments passed on to the script as optional: `SCRIPT.py [ARGS ...]`."""

    def _format_args(self, action, default_metavar) -> str:
        if action.nargs == argparse.REMAINDER:
            return f"[{action.metavar} ...]"
        return super()._format_args(action, default_metavar)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tracegrad` command."""
    from . import __version__, backends
    parser = argparse.ArgumentParser(
        prog="tracegrad", description="tracegrad: PyTorch-style tensors and autograd, compiled training steps.")
    parser.add_argument("--version", action="version", version=f"tracegrad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dump = commands.add_parser(
        "dump", help="run a script and print the IR of each compiled step", formatter_class=_Formatter,
        description="Run SCRIPT.py with ARGS as `python SCRIPT.py ARGS` would and print, for each compiled "
                    "function it traces and each variant of it, the IR at each stage: traced (the step's own ops; "
                    f"values the backward computes are inputs named '{FROM_BACKWARD}'), adjoint (with the "
                    "backward), optimized (after the passes), kernel (generated code, with a code-generating "
                    "backend), replay (the generated Python that feeds each call's tensors to the backend and "
                    "hands back the results). Standard output holds the dump only: the script's own output goes "
                    "to standard error. --format json prints one JSON document (the kernel and replay stages as "
                    "source strings); --format dot prints the graph stages only, so it needs --stage traced, "
                    "adjoint or optimized, or -o. If the script fails, what was traced before is dumped, then its "
                    "traceback; the exit status is 1. Options go before SCRIPT.py; everything after it is passed "
                    "to the script.")
    dump.add_argument("script", metavar="SCRIPT.py", help="the Python script to run")
    dump.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the script")
    dump.add_argument("--stage", choices=STAGES + ("all",), default="all", help="which stage (default: all)")
    dump.add_argument("--format", choices=FORMATS, default="text", help="output form (default: text)")
    dump.add_argument("-o", "--output", metavar="DIR",
                      help="write one file per variant and stage into DIR, FUNCTION.VARIANT.STAGE.{ir,dot,json} "
                           "(kernel and replay stages: .py)")
    dump.add_argument("--backend", choices=backends.names() + ("eager",),
                      help="the backend of compiled functions that don't name one "
                           "(e.g. numba, to see its generated code at --stage kernel)")
    cache = commands.add_parser(
        "cache", help="show or clear the disk cache of compiled kernels",
        description="The kernel cache lives in $TRACEGRAD_CACHE_DIR (default ~/.cache/tracegrad), in its folder "
                    "'kernels'; a folder others can write to, or that can't be made, is not used (each process then "
                    "compiles into a private temporary folder). 'info' shows the folder in use and why, the kernels, "
                    "files and bytes tracegrad keeps there, where new kernels go, and how often kernels were loaded "
                    "or compiled; 'clear' removes tracegrad's own files from it (kernels, their machine code, the "
                    "use log), never other files, and says how many kernels, files and bytes it removed.")
    cache.add_argument("action", choices=("info", "clear"))
    return parser


def _plural(count: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _traced_stage(traced):
    """The step's own nodes as a graph of their own: the values they use that the backward computes are inputs."""
    from .ir import Value
    primal = [n for n in traced.nodes if not n.adjoint]
    defined = {v.id for v in traced.inputs} | {n.out.id for n in primal}
    used = [o for n in primal for o in n.operands] + traced.outputs + [v for v, _, _ in traced.guards] + \
        [src for _, src in traced.writebacks]
    backward = sorted({v.id: v for v in used if v.id not in defined}.values(), key=lambda v: v.id)
    inputs = traced.inputs + [Value(v.id, v.type, "grad", FROM_BACKWARD) for v in backward]
    return dataclasses.replace(traced, inputs=inputs, nodes=primal), backward


def _stage_graph(variant, stage: str):
    """(graph, header) of one graph stage of a variant."""
    traced = variant.traced
    if stage == "traced":
        graph, backward = _traced_stage(traced)
        computed = f"; {', '.join(map(str, backward))} computed by the backward" if backward else ""
        return graph, f"traced: {_plural(len(graph.nodes), 'node')}{computed}"
    if stage == "adjoint":
        adjoint = sum(n.adjoint for n in traced.nodes)
        return traced, (f"adjoint: {_plural(adjoint, 'adjoint node')}; {_plural(variant.trace.pruned, 'forward node')} "
                        f"pruned (no path from a leaf that requires grad to the loss)")
    report = ", ".join(f"{k} -{v}" for k, v in variant.pass_report.items())
    graph = variant.trace.graph
    return graph, f"optimized: {_plural(len(graph.nodes), 'node')} ({report})"


def _source(variant, stage: str) -> str:
    """The Python source of a kernel or replay stage."""
    if stage == "kernel":
        return variant.kernel_source or "# no kernel: the interpreter backend executes the optimized graph directly"
    return variant.replay.source + "\n\n" + getattr(variant.replay, "fast_source", "# no fast path\n")


def _render(variant, stage: str, fmt: str) -> str:
    """One stage as text: the IR's text or DOT form, or the stage's JSON object; source stages as Python."""
    from .ir.printer import to_dot
    if fmt == "json":
        return json.dumps(_stage_json(variant, stage), indent=2, default=str)
    if stage in SOURCE_STAGES:
        return _source(variant, stage)
    graph, header = _stage_graph(variant, stage)
    if fmt == "dot":
        return to_dot(graph)
    return f"# {header}\n" + graph.text(mark_adjoint=stage == "adjoint")


def _stage_json(variant, stage: str) -> dict:
    """One stage's JSON object: {"summary", "graph"} for the IR, {"source"} for Python source."""
    from .ir.printer import to_dict
    if stage in SOURCE_STAGES:
        return {"source": _source(variant, stage)}
    graph, header = _stage_graph(variant, stage)
    return {"summary": header, "graph": to_dict(graph)}


@contextlib.contextmanager
def _as_main(script: str, args: list[str]):
    """Run code as `python SCRIPT.py ARGS` would: the script's folder first on sys.path, sys.argv [SCRIPT.py, *ARGS]."""
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


@contextlib.contextmanager
def _stdout_to_stderr():
    """The script's output goes to stderr: its print()s, and what reaches file descriptor 1 (a child process's)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _check_format(args) -> None:
    """Reject a --format that can't show the chosen stage, saying what to use instead."""
    if args.format != "dot":
        return
    if args.stage in SOURCE_STAGES:
        raise UserError(f"the {args.stage} stage is Python source, which --format dot can't draw: use --format text, "
                        f"or --format json (the source as a string field)")
    if args.stage == "all" and not args.output:
        raise UserError("--format dot draws the graph stages only, and the kernel and replay stages are Python "
                        "source: pick a graph stage (--stage traced, adjoint or optimized), or write every stage "
                        "to files with -o DIR (kernel and replay stages as .py)")


def _collect(events: list) -> dict:
    """Function name -> {"variants": [Variant, ...], "runs_eagerly": [reason, ...]}, in the order traced."""
    functions: dict = {}
    for name, event in events:
        entry = functions.setdefault(name, {"variants": [], "runs_eagerly": []})
        entry["runs_eagerly" if isinstance(event, str) else "variants"].append(event)
    return functions


def _each(functions: dict, stages: tuple):
    """(function name, variant number, variant, stage) of every stage to show, variants numbered per function."""
    for name, entry in functions.items():
        for i, variant in enumerate(entry["variants"]):
            for stage in stages:
                yield name, i, variant, stage


def _write(args, functions: dict, stages: tuple) -> None:
    """Print the stages of every variant (one JSON document for --format json), or write them to files with -o."""
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        written = 0
        for name, i, variant, stage in _each(functions, stages):
            fmt, suffix = ("text", "py") if stage in SOURCE_STAGES else (args.format, SUFFIXES[args.format])
            with open(os.path.join(args.output, f"{name}.{i}.{stage}.{suffix}"), "w") as f:
                f.write(_render(variant, stage, fmt) + "\n")
            written += 1
        print(f"wrote {_plural(written, 'file')} to {args.output}", file=sys.stderr)
    elif args.format == "json":
        doc = {"script": args.script, "args": args.args, "functions": [
            {"name": name, "runs_eagerly": entry["runs_eagerly"], "variants": [
                {"variant": i, "backend": variant.backend,
                 "stages": {stage: _stage_json(variant, stage) for stage in stages}}
                for i, variant in enumerate(entry["variants"])]}
            for name, entry in functions.items()]}
        print(json.dumps(doc, indent=2, default=str))
    else:
        for name, i, variant, stage in _each(functions, stages):
            title = f"{name} (variant {i}) · {stage}"
            heading = f"// {title}" if args.format == "dot" else f"=== {title} ==="
            print(f"{heading}\n{_render(variant, stage, args.format)}\n")


def dump(args) -> int:
    """Run the script, collect every traced variant, print or write its stages (also those traced before the
    script failed; its traceback follows, exit status 1)."""
    from .compiler.compile import OBSERVERS
    _check_format(args)
    if not os.path.isfile(args.script):
        raise UserError(f"no such script: {args.script}")
    if args.backend:
        os.environ["TRACEGRAD_BACKEND"] = args.backend
    events: list = []
    OBSERVERS.append(lambda name, event: events.append((name, event)))
    try:
        with _stdout_to_stderr():
            failure = _run_script(args.script, args.args)
    finally:
        OBSERVERS.pop()
    functions = _collect(events)
    for name, entry in functions.items():
        for reason in entry["runs_eagerly"]:
            print(f"# {name}: runs eagerly: {reason}", file=sys.stderr)
    if not any(entry["variants"] for entry in functions.values()):
        print("no compiled step was traced (a compiled function is traced on its second call)", file=sys.stderr)
    _write(args, functions, STAGES if args.stage == "all" else (args.stage,))
    if isinstance(failure, SystemExit):
        raise UserError(f"{args.script} exited with status {failure.code}")
    if failure is not None:
        sys.stdout.flush()
        _print_traceback(failure, args.script)
        return 1
    return 0


def _size(count: int) -> str:
    """'0 bytes', '23456 bytes (23.5 kB)'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{_plural(count, 'byte')} ({count / scale:.1f} {unit})"
    return _plural(count, "byte")


def cache(args) -> int:
    """`tracegrad cache info|clear`."""
    from .backends.numba_cpu import cache as kernel_cache
    if args.action == "clear":
        try:
            removed = kernel_cache.clear()
        except kernel_cache.NothingToClear as e:
            raise UserError(str(e)) from None
        print(f"removed {_plural(removed['kernels'], 'kernel')}: {_plural(removed['files'], 'file')}, "
              f"{_size(removed['bytes'])}, from {removed['path']} (tracegrad's own files only)")
        return 0
    info = kernel_cache.info()
    private = "a private temporary folder of each process, removed at exit"
    chosen = "set by TRACEGRAD_CACHE_DIR" if info["configured_by"] == "TRACEGRAD_CACHE_DIR" else \
        "the default: TRACEGRAD_CACHE_DIR is not set"
    lines = [f"path: {info['path']} ({chosen})"]
    lines += [f"folder in use: {path} ({kind})" for path, kind in info["folders"]]
    if info["unused"] is not None:
        directory, why, fix = info["unused"]
        lines += [f"folder in use: {private} (a fallback: {directory} can't be used: {why})", f"to fix it: {fix}"]
    lines += [f"kernels: {info['kernels']}", f"files: {info['files']}", f"size: {_size(info['bytes'])}",
              f"new kernels go to: {info['new_kernels'] or private}",
              f"loaded from the cache: {_plural(info['recorded_hits'], 'kernel')}, compiled: "
              f"{info['recorded_misses']} (by the processes that used it)"]
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
