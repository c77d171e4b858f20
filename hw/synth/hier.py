"""Hierarchical estimates: one synthesis of each distinct module, totals composed by instance count.

Amaranth writes every submodule instance as a module of its own (``npu.engine.array.pe_3_7``), so
a 16 × 16 array is 256 PE modules, most of them identical but for their names. :func:`dedupe`
finds the identical ones (the same text once the module's own name, the names of the modules it
instantiates and the numbers of Amaranth's generated names ``$12`` are normalized) and keeps one
representative of each, so Yosys synthesizes a PE once per distinct kind (first or later row,
last column or not) instead of once per instance. :func:`compose` multiplies each module's own
cells by its number of instances.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Module", "split_modules", "dedupe", "instance_counts"]

_MODULE_RE = re.compile(r"^module\s+(\\\S+|[A-Za-z_][\w$]*)\s*\(", re.M)
_INST_RE = re.compile(r"^(\s+)(\\\S+|[A-Za-z_][\w$]*)(\s+)(\\\S+|[A-Za-z_][\w$]*)(\s*\()\s*$", re.M)
_NUM_RE = re.compile(r"\$(\d+)")
_HEADER_RE = re.compile(r"^module\s+(?:\\\S+|[A-Za-z_][\w$]*)\s*\((.*?)\);", re.M | re.S)
_PORT_CONN_RE = re.compile(r"^(\s+\.)(\\\S+ |[A-Za-z_][\w$]*)(\s*\()", re.M)


def _bare(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def _ident(name: str) -> str:
    """``name`` as a Verilog identifier (escaped when it is not a simple one)."""
    return name if re.fullmatch(r"[A-Za-z_][\w$]*", name) else f"\\{name} "


@dataclass
class Module:
    """One module of Yosys-written Verilog: its name, full text and the modules it instantiates."""

    name: str
    text: str
    children: list[tuple[str, str]] = field(default_factory=list)   # (module, instance)
    ports: list[str] = field(default_factory=list)                  # header order, bare names


def split_modules(verilog: str) -> dict[str, Module]:
    """The modules of a Yosys-written Verilog file, by bare name, in file order.

    A module's text runs from the end of the previous module (attributes and comments before
    ``module`` belong to it) to its ``endmodule``.
    """
    modules: dict[str, Module] = {}
    pos = 0
    while True:
        m = _MODULE_RE.search(verilog, pos)
        if m is None:
            break
        end = verilog.find("endmodule", m.end())
        if end < 0:
            raise ValueError(f"module {m.group(1)} has no endmodule")
        end += len("endmodule")
        start = verilog.rfind("endmodule", 0, m.start())
        start = 0 if start < 0 else start + len("endmodule")
        name = _bare(m.group(1))
        text = verilog[start:end].lstrip("\n") + "\n"
        h = _HEADER_RE.search(text)
        ports = [_bare(p.strip()) for p in h.group(1).split(",") if p.strip()] if h else []
        modules[name] = Module(name, text, ports=ports)
        pos = end
    names = set(modules)
    for mod in modules.values():
        for im in _INST_RE.finditer(mod.text):
            child = _bare(im.group(2))
            if child in names:
                mod.children.append((child, _bare(im.group(4))))
    return modules


def instance_counts(modules: dict[str, Module], top: str) -> Counter:
    """How many times each module occurs in the design under ``top`` (``top`` once)."""
    counts: Counter = Counter()

    def walk(name: str, n: int) -> None:
        counts[name] += n
        per_child = Counter(child for child, _ in modules[name].children)
        for child, k in per_child.items():
            walk(child, n * k)

    walk(top, 1)
    return counts


def _rename(text: str, old: str, new: str, renames: dict[str, str],
            port_maps: dict[str, dict[str, str]] | None = None) -> str:
    """Module text with its own name ``old`` -> ``new`` and instantiated modules renamed.

    ``port_maps`` gives, per instantiated module, its port names -> the port names of the
    module that stands for it (two merged modules may name the same port ``port$12$0`` and
    ``port$31$0``: ports are matched by their position in the module header).
    """
    port_maps = port_maps or {}
    text = _MODULE_RE.sub(lambda m: f"module {_ident(new)}(" if _bare(m.group(1)) == old
                          else m.group(0), text, count=1)
    out: list[str] = []
    pos = 0
    for m in _INST_RE.finditer(text):
        child = _bare(m.group(2))
        if child not in renames:
            continue
        end = text.find(");", m.end())
        end = len(text) if end < 0 else end
        out.append(text[pos:m.start()])
        out.append(f"{m.group(1)}{_ident(renames[child])}{m.group(3)}{m.group(4)}{m.group(5)}")
        body = text[m.end():end]
        pmap = port_maps.get(child)
        if pmap:
            def port(p):
                old_port = _bare(p.group(2).rstrip())
                return f"{p.group(1)}{_ident(pmap.get(old_port, old_port))}{p.group(3)}"
            body = _PORT_CONN_RE.sub(port, body)
        out.append(body)
        pos = end
    out.append(text[pos:])
    return "".join(out)


_DECL_RE = re.compile(r"^\s+(?:wire|reg|input|output|inout)\b[^;]*;\s*$")
_DUMP_RE = re.compile(r"\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+")


def _normalized(text: str, name: str, renames: dict[str, str],
                port_maps: dict[str, dict[str, str]] | None = None) -> str:
    """The module's text with its name, its children's names and generated numbers normalized.

    Generated names (``\\$12``, ``\\port$396$0``) are renumbered in the order they first occur
    in the statements, and declarations, which Yosys writes sorted by name, are sorted after
    renumbering, so two instances that differ only in those numbers normalize alike. The port
    list of the module's header is sorted too: its order follows the order in which the parent
    drives the ports (a PE whose ``sel_next`` is a port of the array lists it earlier), and
    instances connect ports by name.
    """
    # Yosys' write_verilog declares one dummy ``\$auto$verilog_backend.cc:<line>:dump_module$<n>``
    # per module (<n> counts modules): its number is not one of the module's own and would
    # otherwise share a renumbering slot with a generated ``\$<n>``.
    text = _DUMP_RE.sub(r"\\$auto$dump_module", text)
    lines = _rename(text, name, "__self__", renames, port_maps).splitlines()
    decls = [ln for ln in lines if _DECL_RE.match(ln)]
    stmts = [ln for ln in lines if not _DECL_RE.match(ln)]
    header = next((i for i, ln in enumerate(stmts)
                   if ln.startswith("module ") and ln.rstrip().endswith(");")), None)
    order: dict[str, int] = {}
    body = [ln for i, ln in enumerate(stmts) if i != header]
    for ln in body + decls + stmts:
        for num in _NUM_RE.findall(ln):
            order.setdefault(num, len(order))

    def sub(ln: str) -> str:
        return _NUM_RE.sub(lambda m: f"${order[m.group(1)]}", ln)
    out = [sub(ln) for ln in stmts]
    if header is not None:
        head, _, ports = out[header].rstrip()[:-2].partition("(")
        out[header] = f"{head}({', '.join(sorted(p.strip() for p in ports.split(',')))});"
    return "\n".join(out + sorted(sub(ln) for ln in decls))


def dedupe(verilog: str, top: str, variant: dict[str, str] | None = None
           ) -> tuple[str, dict[str, str], Counter]:
    """Keep one module of each distinct kind.

    Parameters
    ----------
    verilog : str
        Yosys-written Verilog of the whole design (Amaranth's output).
    top : str
        The top module's name.
    variant : dict of str to str, optional
        A tag per module name; modules with different tags are never merged (the DSP budget uses
        it to keep PEs whose multiplier goes to a DSP apart from those that go to LUTs).

    Returns
    -------
    text : str
        Verilog with one module per kind, children first, instantiations renamed.
    representative : dict of str to str
        Every original module name to the name of the module that stands for it.
    counts : collections.Counter
        Instances of each representative in the design.
    """
    modules = split_modules(verilog)
    if top not in modules:
        raise ValueError(f"the Verilog has no module {top}")
    variant = variant or {}
    order: list[str] = []
    seen: set[str] = set()

    def post(name: str) -> None:          # children before parents
        if name in seen:
            return
        seen.add(name)
        for child, _ in modules[name].children:
            post(child)
        order.append(name)

    post(top)
    rep: dict[str, str] = {}
    port_maps: dict[str, dict[str, str]] = {}
    by_key: dict[str, str] = {}
    out: list[str] = []
    for name in order:
        mod = modules[name]
        key = hashlib.sha256((variant.get(name, "") + "\0" +
                              _normalized(mod.text, name, rep, port_maps)).encode()).hexdigest()
        if key in by_key and name != top:
            keep = by_key[key]
            rep[name] = keep
            if mod.ports != modules[keep].ports:
                port_maps[name] = dict(zip(mod.ports, modules[keep].ports))
            continue
        by_key[key] = name
        rep[name] = name
        out.append(_rename(mod.text, name, name, rep, port_maps))
    counts = Counter()
    for name, n in instance_counts(modules, top).items():
        counts[rep[name]] += n
    return "\n".join(out), rep, counts
