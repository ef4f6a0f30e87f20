"""The read recorder on its own: which Python values a traced function reads and stores.

These read bytecode, which changes between Python versions: they were run on 3.10, 3.11, 3.12 and 3.13.
"""
from tracegrad import nn
from tracegrad.compiler.frames import chains
from tracegrad.compiler.reads import ReadRecorder

SCALE = 2.0


class _Config:
    def __init__(self):
        self.scale = 0.5
        self.count = 0


def _reads(fn, *args, roots=()) -> tuple[dict, dict]:
    with ReadRecorder([fn], roots=roots) as recorder:
        fn(*args)
    reads = {r.slot.label: r.expect for r in recorder.reads.values()}
    writes = {w.slot.label: w.before for w in recorder.writes.values()}
    return reads, writes


def test_globals_attributes_entries_and_closure_cells_are_read():
    table = {"p": 3, "q": [1.0, 2.0]}
    cfg = _Config()

    def fn(key):
        return SCALE * cfg.scale * table["p"] * table[key][1] * table.get("p")

    reads, _ = _reads(fn, "q")
    assert reads["SCALE"].value == 2.0 and reads["cfg.scale"].value == 0.5
    assert reads["cfg"].kind == "is" and reads["table['p']"].value == 3
    assert reads["table['q']"].kind == "items" and reads["table['q']"].value[1] == ((0, 1.0), (1, 2.0))


def test_module_parameters_and_submodules_are_read_through_their_registries():
    model = nn.Sequential(nn.Linear(2, 2))

    def fn():
        return model[0].weight, model._modules["0"].bias

    reads, _ = _reads(fn)
    assert reads["model"].value is model and reads["self._modules"].kind == "items"  # Sequential.__getitem__'s read
    assert reads["model._modules['0']"].value is model[0]
    assert reads["model._modules['0'].bias"].value is model[0].bias and reads["model._modules['0'].bias"].kind == "is"


def test_stores_and_augmented_assignments_into_objects_that_outlive_the_call():
    cfg = _Config()
    table = {"n": 1}

    def fn():
        cfg.count += 1
        table["n"] += 1
        cfg.seen = True

    reads, writes = _reads(fn, roots=[cfg, table])
    assert reads["cfg.count"].value == 0 and reads["table['n']"].value == 1  # augmented: read first
    assert set(writes) == {"cfg.count", "table['n']", "cfg.seen"}


def test_stores_into_objects_made_by_the_call_are_not_recorded():
    def fn():
        scratch = _Config()
        scratch.count = 5
        return scratch

    _, writes = _reads(fn)
    assert writes == {}


def test_each_version_finds_the_chains_of_the_same_source():
    def fn(self, d, k):
        x = self.a.b
        self.n += 1
        d["a"] += 2
        d[k] -= 1
        return d.get("z", None), d.get("y"), x * d[k], SCALE

    found = {(c.root, c.steps, c.store) for chains in chains(fn.__code__).values() for c in chains}
    assert (("local", "self"), (("attr", "a"), ("attr", "b")), None) in found
    assert (("local", "self"), (), ("attr_updated", "n")) in found
    assert (("local", "d"), (), ("item_updated", "a")) in found
    assert (("local", "d"), (), ("item_local_updated", "k")) in found
    assert (("local", "d"), (("get", "y"),), None) in found
    assert (("local", "d"), (("item_local", "k"),), None) in found
    assert (("global", "SCALE"), (), None) in found
