"""The typed SSA IR of traced steps: graph, text form, verifier and reference interpreter."""
from .graph import ROLES, Graph, Node, Type, Value, parse
from .interpreter import GuardFailure, run
from .verify import IRError, verify

__all__ = ["Graph", "Node", "Type", "Value", "ROLES", "parse", "run", "verify", "IRError", "GuardFailure"]
