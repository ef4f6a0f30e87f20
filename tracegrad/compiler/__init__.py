"""The compiler front half: tracer, compile (guards, variants, eager fallback), make_ir."""
from .compile import CacheInfo, CompiledFunction, CompileWarning, compile, make_ir
from .explain import ExplainReport, explain
from .hyper import hyperparameter, hyperparameter_flag
from .tracer import TraceUnsupported, Tracer
from .verify_mode import CompileMismatch

__all__ = ["CompileMismatch", "compile", "make_ir", "CompiledFunction", "CacheInfo", "CompileWarning", "Tracer", "TraceUnsupported", "hyperparameter", "hyperparameter_flag", "explain", "ExplainReport"]
