"""Every TensorRT name the kit uses, and every name the fake provides, exists in real TensorRT.

The truth is tests/fixtures/tensorrt_api_{10.x,11.x}.txt: the names (and enum values) present at
every release of the major version read, extracted by tools/extract_tensorrt_api.py from the
sources of TensorRT's own Python bindings (NVIDIA/TensorRT python/src, include/; the tags and
commits are in each file's header); and tests/fixtures/tensorrt_api_rtx-1.7.x.txt, read by the
same tool from the installed tensorrt_rtx wheel (a test below re-reads the wheel and compares).
So a typo, a name that exists only in our heads, or an API that TensorRT removed fails here, on
the CPU, instead of on the user's first GPU run.

- The kit: `trt.X`, `trt.X.Y` (also `self.trt.X...`, and getattr(trt.X, 'Y', default)) in
  centernet/ and tools/, found with `ast`; required in 10.x, 11.x and TensorRT for RTX unless a
  getattr with a default allows it to be missing in some; inside a class named `Rtx...`
  (engine/api.py's RtxApi), required in TensorRT for RTX only. A class derived from `trt.X` must
  define X's callbacks.
- The fake: its module attributes, classes (their methods, properties and `self.x` attributes,
  read from its source with `ast`) and enum values, per flavour, against that flavour's list.
Object methods (config.set_flag, ...) are not typed here; they are covered by the contract tests,
which run the kit against the fake, and the fake can only have real names.
"""

import ast
import enum
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_tensorrt  # noqa: E402
from real_rtx import requires_rtx, rtx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'tests' / 'fixtures'
MAJORS = {'10': '10.x', '11': '11.x', 'rtx': 'for RTX 1.7.x'}
FILES = {'10': '10.x', '11': '11.x', 'rtx': 'rtx-1.7.x'}
FAKE_VERSIONS = {'10': '10.8.0.43', '11': '11.0.0.12', 'rtx': fake_tensorrt.RTX_VERSION}
RTX_ONLY_PREFIX = 'Rtx'  # a class whose name starts so holds TensorRT for RTX's own calls
# The Python package sets __version__ (python/packaging/bindings_wheel/tensorrt/__init__.py),
# outside the bindings the lists are read from.
PACKAGE_NAMES = {'__version__'}
# What a subclass of these TensorRT interfaces must implement: the binding's trampoline calls
# these names (PYBIND11_OVERLOAD_PURE_NAME in python/src/infer/pyCore.cpp).
CALLBACKS = {'IProgressMonitor': {'phase_start', 'step_complete', 'phase_finish'},
             'ILogger': {'log'}}


class Api:
    """One fixture file: classes with their bases, member entries, enum values."""

    def __init__(self, path):
        self.path = path
        self.bases, self.entries, self.values = {}, set(), {}
        for line in path.read_text().splitlines():
            if not line or line.startswith('#'):
                continue
            if line.startswith('class '):
                name, _, bases = line[len('class '):].partition(' : ')
                self.bases[name] = [b for b in bases.split(', ') if b]
                continue
            entry, _, value = line.partition(' = ')
            self.entries.add(entry)
            if value:
                self.values[entry] = None if value == '?' else int(value)

    def has(self, dotted):
        """`X`, `X.Y`, `X.Y.Z`: a class or module function, or a member (through the bases)."""
        if dotted in PACKAGE_NAMES or dotted in self.bases or dotted in self.entries:
            return True
        owner, _, member = dotted.rpartition('.')
        if member == '__init__' and owner in self.bases:  # .def(py::init<...>()): no name
            return True
        return bool(owner) and any(self.has(f'{base}.{member}')
                                   for base in self.bases.get(owner, ()))

    def value(self, dotted):
        return self.values.get(dotted, 'absent')


@pytest.fixture(scope='module')
def apis():
    return {major: Api(FIXTURES / f'tensorrt_api_{label}.txt') for major, label in FILES.items()}


# --- the kit's uses -------------------------------------------------------------------------

def _dotted(node):
    """'X.Y' for trt.X.Y / self.trt.X.Y, else None; Python's own attributes after a name
    (trt.X.__members__.items) are not TensorRT's: the chain stops before them."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
        if isinstance(node, ast.Attribute) and node.attr == 'trt' and \
                isinstance(node.value, ast.Name) and node.value.id == 'self':
            return _tensorrt_part(parts)
    if isinstance(node, ast.Name) and node.id == 'trt':
        return _tensorrt_part(parts)
    return None


def _tensorrt_part(reversed_parts):
    names = list(reversed(reversed_parts))
    for index, name in enumerate(names):
        if index and name.startswith('__') and name.endswith('__'):
            names = names[:index]
            break
    return '.'.join(names)


def tensorrt_uses(source, filename='<source>'):
    """(required, optional, subclasses, rtx_only) TensorRT names in `source`: required 'X.Y'
    uses, getattr(trt.X, 'Y', default) ones, {class name: 'X'} for classes deriving from trt.X,
    and the required uses that sit inside an `Rtx...` class."""
    tree = ast.parse(source, filename)
    required, optional, subclasses, rtx_only = set(), set(), {}, set()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_rtx_class(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.ClassDef) and node.name.startswith(RTX_ONLY_PREFIX):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == 'tensorrt':
                    assert alias.asname in (None, 'trt'), \
                        f'{filename}: import tensorrt as {alias.asname}: call it trt'
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id == 'getattr' and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and _dotted(node.args[0]):
            name = f'{_dotted(node.args[0])}.{node.args[1].value}'
            (optional if len(node.args) == 3 else required).add(name)
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _dotted(base):
                    subclasses[node.name] = (_dotted(base), {
                        item.name for item in node.body if isinstance(item, ast.FunctionDef)})
        if isinstance(node, ast.Attribute) and _dotted(node) and \
                not isinstance(parents.get(node), ast.Attribute):
            # the longest chain only: trt.X.Y, not trt.X too
            (rtx_only if in_rtx_class(node) else required).add(_dotted(node))
    return required, optional, subclasses, rtx_only


def kit_sources():
    files = sorted((ROOT / 'centernet').rglob('*.py')) + sorted((ROOT / 'tools').glob('*.py'))
    files += sorted(ROOT.glob('*.py'))
    return {path.relative_to(ROOT): path.read_text() for path in files}


def problems_in(source, apis, filename='<source>'):
    """What the kit's use of TensorRT in `source` gets wrong, one line each."""
    required, optional, subclasses, rtx_only = tensorrt_uses(source, filename)
    found = []
    for name in sorted(required):
        missing = [MAJORS[m] for m, api in apis.items() if not api.has(name)]
        if missing:
            found.append(f'{filename}: trt.{name} does not exist in TensorRT {", ".join(missing)}')
    for name in sorted(rtx_only):
        if not apis['rtx'].has(name):
            found.append(f'{filename}: trt.{name} does not exist in TensorRT {MAJORS["rtx"]}')
    for name in sorted(optional):
        if not any(api.has(name) for api in apis.values()):
            found.append(f'{filename}: trt.{name} exists in no TensorRT version read')
    for cls, (base, methods) in sorted(subclasses.items()):
        needed = CALLBACKS.get(base, set())
        if base not in CALLBACKS:
            found.append(f'{filename}: {cls} derives from trt.{base}, whose callbacks this test '
                         'does not know: add them to CALLBACKS')
        for method in sorted(needed - methods):
            found.append(f'{filename}: {cls}(trt.{base}) does not define {method}: TensorRT '
                         'would call the base class')
    return found


def test_every_tensorrt_name_the_kit_uses_exists_in_10_11_and_rtx(apis):
    sources = kit_sources()
    uses, rtx_uses = set(), set()
    problems = []
    for path, source in sources.items():
        found = tensorrt_uses(source, str(path))
        uses |= found[0]
        rtx_uses |= found[3]
        problems += problems_in(source, apis, str(path))
    assert problems == []
    # the walk sees the kit's uses (a walk that finds nothing would pass anything)
    assert {'BuilderFlag.TF32', 'MemoryPoolType.WORKSPACE', 'ILogger.WARNING', 'IProgressMonitor',
            'Builder', 'OnnxParser', 'Runtime', '__version__'} <= uses
    assert {'ComputeCapability.CURRENT', 'DynamicShapesKernelSpecializationStrategy.EAGER',
            'EngineInvalidityDiagnostics'} <= rtx_uses


@pytest.mark.parametrize('source, words', [
    ('def f(trt):\n    return trt.BuilderFlag.TF23\n', 'trt.BuilderFlag.TF23 does not exist in '
                                                      'TensorRT 10.x, 11.x'),
    ('def f(trt):\n    config.set_flag(trt.BuilderFlag.FP16)\n',  # removed in 11
     'trt.BuilderFlag.FP16 does not exist in TensorRT 11.x'),
    ('def f(trt):\n    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)\n',
     'EXPLICIT_BATCH does not exist in TensorRT 11.x'),
    ('def f(self):\n    return self.trt.Runtime(self.trt.Loger(0))\n', 'trt.Loger does not'),
    ('def f(trt):\n    return getattr(trt.BuilderFlag, "STRONGLY_TYPD", None)\n',
     'STRONGLY_TYPD exists in no TensorRT version'),
    ('def f(trt):\n    class P(trt.IProgressMonitor):\n        def step_completed(self, n, s):\n'
     '            return True\n', 'does not define step_complete'),
    ('class Api:\n    def f(self):\n        return self.trt.ComputeCapability.CURRENT\n',
     'trt.ComputeCapability.CURRENT does not exist in TensorRT 10.x, 11.x'),  # RTX's only
    ('class RtxApi:\n    def f(self):\n        return self.trt.ComputeCapability.SM90\n',
     'trt.ComputeCapability.SM90 does not exist in TensorRT for RTX 1.7.x'),
])
def test_a_typo_or_a_removed_name_fails(apis, source, words):
    """The checker itself: each of these would break only on a user's GPU."""
    problems = problems_in(source, apis)
    assert any(words in line for line in problems), problems


# --- the fake -------------------------------------------------------------------------------

def _class_body(node):
    """A class's statements, those under `if flavour:` included (flavour-only members)."""
    for item in node.body:
        if isinstance(item, ast.If):
            yield from item.body
        else:
            yield item


def fake_class_members():
    """{class name: public names} of the fake's classes, read from its source: methods,
    properties, class attributes and `self.x = ...` attributes."""
    tree = ast.parse(inspect.getsource(fake_tensorrt))
    members = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef) or node.name == 'Calls':
            continue
        names = set()
        for item in _class_body(node):
            if isinstance(item, ast.FunctionDef):
                names.add(item.name)
                for sub in ast.walk(item):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and \
                            isinstance(sub.value, ast.Name) and sub.value.id == 'self':
                        names.add(sub.attr)
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Name):
                            names.add(leaf.id)
        members[node.name] = {n for n in names if not n.startswith('_')}
    return members


def enum_problems(api, owner, enum_type):
    found = []
    for member in enum_type:
        dotted = f'{owner}.{member.name}'
        real = api.value(dotted)
        if real == 'absent':
            found.append(f'{dotted} is not in TensorRT {api.path.name}')
        elif real is not None and real != int(member):
            found.append(f'{dotted} = {int(member)} in the fake, {real} in TensorRT')
    return found


@pytest.mark.parametrize('major', sorted(FAKE_VERSIONS))
def test_every_name_and_value_the_fake_provides_is_tensorrts(apis, major):
    api = apis[major]
    trt = fake_tensorrt.make_fake_tensorrt(FAKE_VERSIONS[major])
    members = fake_class_members()
    problems, provided = [], []
    for name, value in vars(trt).items():
        if name in fake_tensorrt.FAKE_ONLY or (name.startswith('__') and name not in
                                               PACKAGE_NAMES):
            continue
        provided.append(name)
        if not api.has(name):
            problems.append(f'trt.{name} is not in TensorRT {MAJORS[major]}')
            continue
        if isinstance(value, type) and issubclass(value, enum.Enum):
            problems += enum_problems(api, name, value)
        elif isinstance(value, type):
            for base in value.__bases__:
                # A builtin base gives the fake what the binding gives in C++ (bytes: the
                # buffer protocol of IHostMemory); it is no TensorRT name.
                if base.__module__ != 'builtins' and base.__name__ not in api.bases[name]:
                    problems.append(f'trt.{name} derives from {base.__name__} in the fake only')
            for member in sorted(members.get(value.__name__, ())):
                if not hasattr(value, member) and member not in members_set_in_setup(value):
                    continue  # another flavour's member (under `if rtx:`)
                attribute = getattr(value, member, None)
                if isinstance(attribute, type) and issubclass(attribute, enum.Enum):
                    problems += enum_problems(api, f'{name}.{member}', attribute)
                if not api.has(f'{name}.{member}'):
                    problems.append(f'trt.{name}.{member} is not in TensorRT {MAJORS[major]}')
    assert problems == []
    assert {'Builder', 'IBuilderConfig', 'BuilderFlag', 'ILogger', 'Runtime'} <= set(provided)
    if major == 'rtx':
        assert {'ComputeCapability', 'IRuntimeConfig', 'EngineValidity'} <= set(provided)


def members_set_in_setup(cls):
    """Instance attributes the fake sets in __init__/_setup: not on the class, still real names
    to check (`self.progress_monitor = None`)."""
    tree = ast.parse(inspect.getsource(fake_tensorrt))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return {sub.attr for item in _class_body(node) if isinstance(item, ast.FunctionDef)
                    and item.name in ('__init__', '_setup') for sub in ast.walk(item)
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                    and isinstance(sub.value, ast.Name) and sub.value.id == 'self'}
    return set()


@requires_rtx
def test_the_rtx_list_is_what_the_installed_wheel_has():
    """tests/fixtures/tensorrt_api_rtx-1.7.x.txt against the installed tensorrt_rtx, read again
    the same way: a wheel update that changes a name shows here."""
    sys.path.insert(0, str(ROOT / 'tools'))
    import extract_tensorrt_api as extract
    fixture = FIXTURES / 'tensorrt_api_rtx-1.7.x.txt'
    entries = [line for line in fixture.read_text().splitlines() if not line.startswith('#')]
    fresh = [line for line in extract.render(extract.extract_installed(rtx), []).splitlines()
             if line]
    assert fresh == entries, f'refresh it: python tools/extract_tensorrt_api.py --module ' \
                             f'tensorrt_rtx --label "for RTX 1.7.x" --out {fixture}'


def test_the_fake_checker_catches_an_invented_value_and_name(apis):
    """The checker itself, on the 10.x/11.x differences the old fake got wrong."""
    swapped = enum.IntEnum('NetworkDefinitionCreationFlag', {
        'STRONGLY_TYPED': 0, 'PREFER_AOT_PYTHON_PLUGINS': 1, 'PREFER_JIT_PYTHON_PLUGINS': 2})
    assert enum_problems(apis['11'], 'NetworkDefinitionCreationFlag', swapped) == [
        'NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS = 1 in the fake, 2 in TensorRT',
        'NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS = 2 in the fake, 1 in TensorRT']
    invented = enum.IntEnum('BuilderFlag', {'FP16': 0, 'TF32': 4})
    assert enum_problems(apis['11'], 'BuilderFlag', invented) == [
        'BuilderFlag.FP16 is not in TensorRT tensorrt_api_11.x.txt',
        'BuilderFlag.TF32 = 4 in the fake, 6 in TensorRT']


def test_the_lists_hold_what_tensorrt_is_known_to_have(apis):
    """The extraction, against facts stated in NvInfer.h's comments and TensorRT's docs: TF32 is
    BuilderFlag 6 in both; 11 dropped FP16 and EXPLICIT_BATCH and moved STRONGLY_TYPED to 0."""
    ten, eleven = apis['10'], apis['11']
    assert ten.value('BuilderFlag.TF32') == eleven.value('BuilderFlag.TF32') == 6
    assert ten.value('BuilderFlag.FP16') == 0 and not eleven.has('BuilderFlag.FP16')
    assert ten.value('NetworkDefinitionCreationFlag.STRONGLY_TYPED') == 1
    assert eleven.value('NetworkDefinitionCreationFlag.STRONGLY_TYPED') == 0
    assert not eleven.has('NetworkDefinitionCreationFlag.EXPLICIT_BATCH')
    assert ten.has('Logger.WARNING') and ten.bases['Logger'] == ['ILogger']  # via the base
    assert ten.has('IExecutionContext.set_tensor_address') and \
        eleven.has('IExecutionContext.execute_async_v3')


def test_the_extractor_reads_pybind11_declarations():
    """tools/extract_tensorrt_api.py on a snippet in the bindings' own style: classes with their
    bases, methods and properties (a lambda with ';' inside a .def included), a nested enum
    with exported values, a module function, enum values from the header (implicit ones too)."""
    sys.path.insert(0, str(ROOT / 'tools'))
    import extract_tensorrt_api as extract
    source = '''
    void bindCore(py::module& m) {
        py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger", ILoggerDoc::descr};
        py::enum_<ILogger::Severity>(baseLoggerBinding, "Severity", py::arithmetic())
            .value("ERROR", ILogger::Severity::kERROR)  // a comment ; with ( a paren
            .value("WARNING", ILogger::Severity::kWARNING)
            .export_values();
        baseLoggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);
        py::class_<DefaultLogger, ILogger>(m, "Logger", LoggerDoc::descr)
            .def_property("min_severity", &DefaultLogger::get, [](DefaultLogger& self, int s) {
                self.set(s); char c = ')'; })
            .def("log", &DefaultLogger::log);
        m.def("get_plugin_registry", &getPluginRegistry);
    }
    '''
    header = '''
    class ILogger { public: enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1,
        //! a comment
        kWARNING = 2, kINFO, kVERBOSE }; };
    '''
    entries = extract.extract_from({'python/src/infer/pyCore.cpp': source},
                                   {'include/NvInferRuntimeBase.h': header})
    rendered = extract.render(entries, []).splitlines()
    assert rendered == ['ILogger.ERROR = 1', 'ILogger.Severity', 'ILogger.Severity.ERROR = 1',
                        'ILogger.Severity.WARNING = 2', 'ILogger.WARNING = 2', 'ILogger.log',
                        'Logger.log', 'Logger.min_severity', 'get_plugin_registry',
                        'class ILogger', 'class ILogger.Severity', 'class Logger : ILogger']
