"""No import circle among the kit's modules, and the TensorRT wing's imports point down.

The truth is the source itself: every `import` and `from ... import` in centernet/, read with
`ast`, wherever it sits. An import inside a function counts as much as one at the top: it runs
later, but the modules still depend on each other both ways (that is how engine_build ->
engine_check -> tensorrt_backend -> engine_build hid its circle). A package's __init__ that only
re-exports is not entered implicitly by importing one of its submodules (Python runs it first, but
it imports nothing that imports back), so only explicit imports are edges.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'centernet'


def module_name(path, root):
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def import_graph(sources):
    """{module: {modules it imports}} for {module name: (source, is_package)}; only edges to
    modules in `sources`."""
    names = set(sources)
    graph = {}
    for module, (source, is_package) in sources.items():
        package = module if is_package else module.rpartition('.')[0]
        edges = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')
                    base = base[:len(base) - node.level + 1]
                    base = '.'.join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                # `from X import y`: the module X.y when there is one, else X itself
                targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in names else base
                           for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in names and t != module}
        graph[module] = edges
    return graph


def cycles(graph):
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reaches(graph, start, goal):
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def kit_graph():
    sources = {module_name(path, ROOT): (path.read_text(), path.name == '__init__.py')
               for path in sorted((ROOT / PACKAGE).rglob('*.py'))}
    return import_graph(sources)


def test_no_import_cycle_among_the_kits_modules():
    graph = kit_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50  # the walk found the kit
    assert cycles(graph) == []


def test_the_tensorrt_wing_points_down():
    """build -> check -> backends.tensorrt_backend -> engine.api / sidecar / parts; the backend
    never reaches the build, and the backends' base class imports none of its subclasses."""
    graph = kit_graph()
    for edge in [('centernet.engine.build', 'centernet.engine.check'),
                 ('centernet.engine.check', 'centernet.backends.tensorrt_backend'),
                 ('centernet.backends.tensorrt_backend', 'centernet.engine.api'),
                 ('centernet.backends.tensorrt_backend', 'centernet.engine.sidecar'),
                 ('centernet.backends.tensorrt_backend', 'centernet.engine.parts')]:
        assert edge[1] in graph[edge[0]], edge
    assert not reaches(graph, 'centernet.backends.tensorrt_backend', 'centernet.engine.build')
    assert not reaches(graph, 'centernet.engine.api', 'centernet.backends.tensorrt_backend')
    assert not any(module.startswith('centernet.backends.')
                   for module in graph['centernet.backends.base'])


def test_the_checker_finds_a_circle_hidden_in_a_function():
    """The old layout, in miniature: engine_build imports engine_check, which imports the
    backend inside a function, which imports engine_build; and a base class importing its
    subclass. Both circles are found; a clean chain is not flagged."""
    sources = {
        'kit': ('', True),
        'kit.engine_build': ('from . import engine_check\n', False),
        'kit.engine_check': ('def open_engine():\n    from .backends.trt import Trt\n', False),
        'kit.backends': ('', True),
        'kit.backends.trt': ('from .. import engine_build as eb\nfrom .base import Backend\n',
                             False),
        'kit.backends.base': ('def open_backend():\n    from .trt import Trt\n', False),
        'kit.clean': ('import kit.backends.base\n', False),
    }
    graph = import_graph(sources)
    assert graph['kit.engine_check'] == {'kit.backends.trt'}
    assert cycles(graph) == [['kit.backends.base', 'kit.backends.trt', 'kit.engine_build',
                              'kit.engine_check']]
    del sources['kit.backends.base']
    sources['kit.backends.trt'] = ('from .. import engine_build as eb\n', False)
    assert cycles(import_graph(sources)) == [['kit.backends.trt', 'kit.engine_build',
                                              'kit.engine_check']]
    sources['kit.backends.trt'] = ('from ..errors import E\n', False)
    assert cycles(import_graph(sources)) == []
