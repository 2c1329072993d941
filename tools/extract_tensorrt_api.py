#!/usr/bin/env python3
"""List the names of TensorRT's Python API, read from the sources of its pybind11 bindings.

    python tools/extract_tensorrt_api.py --git-dir TensorRT/.git --refs v10.0.1 v10.16 \
        --label 10.x --out tests/fixtures/tensorrt_api_10.x.txt
    python tools/extract_tensorrt_api.py --module tensorrt_rtx --label 'for RTX 1.7.x' \
        --out tests/fixtures/tensorrt_api_rtx-1.7.x.txt

The second form reads an installed module by introspection (TensorRT for RTX installs anywhere, and
its wheel is the authority on its own names): its classes with their bases and own members, its
enums' values, its functions; the same file format.

Reads, at each git ref of an NVIDIA/TensorRT checkout, python/src/**/*.cpp (the bindings:
`py::class_<...>(m, "Name")`, `py::enum_<...>(m, "Name")`, `.def("name"`, `.def_property...("name"`,
`.value("NAME", Type::kNAME`, `m.def("name"`) and include/NvInfer*.h + NvOnnxParser.h (the C++
enums, for the values). With several refs it writes the names present at every ref (a name the kit
uses must exist across the whole major version), and an enum value only where all refs agree.

The file it writes, one entry a line, is what tests/test_tensorrt_api_names.py checks the kit's
`trt.X.Y` uses and tests/fake_tensorrt.py against:
    class Logger : ILogger      a class and its Python bases
    Logger.log                  a member (method, property, nested enum, exported enum value)
    BuilderFlag.TF32 = 6        an enum member and its value ('?' where the headers do not say)
    create_inference_builder    a module-level function
This is a regular-expression reading of C++ made for this one use, not a C++ parser: it is exact
for the declarations the kit's tests look up, and is checked by those tests' own asserts.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

CLASS_RE = re.compile(r'py::(class_|enum_)<([^;{(]*?)>\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*"(\w+)"')
DEF_RE = re.compile(r'\.def(?:_property(?:_readonly)?|_readwrite|_readonly|_static)?\(\s*"(\w+)"')
VALUE_RE = re.compile(r'\.value\(\s*"(\w+)"\s*,\s*([\w:]+)')
MODULE_DEF_RE = re.compile(r'\bm\.def\(\s*"(\w+)"')
VAR_DEF_RE = re.compile(r'^\s*(\w+)\s*\.def')
ENUM_RE = re.compile(r'enum\s+class\s+(\w+)\s*:\s*\w+\s*\{(.*?)\};', re.S)
ENUM_MEMBER_RE = re.compile(r'^\s*(k\w+)(?:\s+TRT_DEPRECATED_ENUM)?\s*(?:=\s*([^,]+?))?\s*,?\s*$')


def git(git_dir, *args):
    return subprocess.run(['git', '--git-dir', str(git_dir), *args], check=True,
                          capture_output=True, text=True).stdout


def statements(source):
    """C++ statements, roughly: split at each ';' outside parentheses and literals (a lambda's
    body is inside the parentheses of the .def it is passed to)."""
    source = re.sub(r'//[^\n]*', '', source)
    source = re.sub(r"'(\\.|[^'\\])'", "' '", source)  # char literals: no quote or paren
    out, depth, start, in_string = [], 0, 0, False
    for i, c in enumerate(source):
        if in_string:
            in_string = not (c == '"' and source[i - 1] != '\\')
        elif c == '"':
            in_string = True
        elif c == '(':
            depth += 1
        elif c == ')':
            depth = max(depth - 1, 0)
        elif c == ';' and depth == 0:
            out.append(source[start:i + 1])
            start = i + 1
    out.append(source[start:])
    return out


def cpp_enum_values(headers):
    """C++ enum name -> {kMEMBER: int}; a name defined twice (namespaces) maps to None."""
    values = {}
    for text in headers:
        text = re.sub(r'//[^\n]*', '', text)
        for name, body in ENUM_RE.findall(text):
            members, last = {}, -1
            for line in body.replace(',', ',\n').splitlines():
                match = ENUM_MEMBER_RE.match(line)
                if not match:
                    continue
                member, value = match.groups()
                try:
                    last = int(value, 0) if value is not None else last + 1
                except ValueError:
                    last = None  # an expression: not resolved here
                    members[member] = None
                    continue
                members[member] = last
            values[name] = None if name in values else members
    return values


def extract(git_dir, ref):
    """{entry: value or None} for one ref; entries as in the module docstring (value: enums)."""
    files = git(git_dir, 'ls-tree', '-r', '--name-only', ref).splitlines()
    sources = {f: git(git_dir, 'show', f'{ref}:{f}') for f in files
               if f.startswith('python/src/') and f.endswith('.cpp')}
    headers = {f: git(git_dir, 'show', f'{ref}:{f}') for f in files
               if re.fullmatch(r'include/(NvInfer\w*|NvOnnxParser)\.h', f)}
    return extract_from(sources, headers)


def extract_from(sources, headers):
    """{entry: value} from binding sources and headers, each {path: text}."""
    # Two families of enums: the parser's (nvonnxparser) and the core's (nvinfer1); both have
    # an ErrorCode, so each binding file looks its values up in its own family's headers.
    parser_enums = cpp_enum_values([t for f, t in headers.items() if 'NvOnnxParser' in f])
    core_enums = cpp_enum_values([t for f, t in headers.items() if 'NvOnnxParser' not in f])
    cpp_to_py, bases, entries, variables = {}, {}, {}, {}
    declared = []  # (statement, python name, kind, scope)
    for path, source in sources.items():
        enums = parser_enums if 'parsers/' in path else core_enums
        for statement in statements(source):
            match = CLASS_RE.search(statement)
            if match:
                kind, template, variable, scope, name = match.groups()
                cpp_types = [t.strip() for t in re.split(r',(?![^<]*>)', template)]
                cpp_to_py[cpp_types[0].split('::')[-1]] = name
                if variable:
                    variables[variable] = name
                declared.append((statement[match.end():], name, kind, scope, cpp_types, enums))
                continue
            var = VAR_DEF_RE.match(statement)
            if var and var.group(1) in variables:
                declared.append((statement, variables[var.group(1)], 'class_', 'm', [], enums))
            for function in MODULE_DEF_RE.findall(statement):
                entries[function] = None
    for body, name, kind, scope, cpp_types, enums in declared:
        qualified = name if scope == 'm' else f'{variables.get(scope, scope)}.{name}'
        if kind == 'class_':
            if qualified not in bases:
                bases[qualified] = [cpp_to_py[t.split('::')[-1]] for t in cpp_types[1:]
                                    if t.split('::')[-1] in cpp_to_py]
            for member in DEF_RE.findall(body):
                entries[f'{qualified}.{member}'] = None
            continue
        if scope != 'm':
            entries[qualified] = None  # a nested enum is a member of its class
        bases.setdefault(qualified, [])
        cpp_enum = cpp_types[0].split('::')[-1]
        members = enums.get(cpp_enum) or {}
        for member, cpp_value in VALUE_RE.findall(body):
            value = members.get(cpp_value.split('::')[-1])
            entries[f'{qualified}.{member}'] = ('=', value)
            if '.export_values()' in body:  # the values also appear on the enclosing scope
                outer = qualified.rsplit('.', 1)[0] if '.' in qualified else None
                entries[f'{outer}.{member}' if outer else member] = ('=', value)
    for name, base_names in bases.items():
        entries[f'class {name}'] = base_names
    return entries


def extract_installed(module):
    """{entry: value} of an imported binding module, read by introspection."""
    entries = {}

    def add_class(qualified, cls):
        own = vars(cls)
        members = getattr(cls, '__members__', None)
        if isinstance(members, dict):  # a pybind11 enum
            entries[f'class {qualified}'] = []
            for member, value in members.items():
                entries[f'{qualified}.{member}'] = ('=', int(value))
            return
        entries[f'class {qualified}'] = [base.__name__ for base in cls.__bases__
                                         if getattr(module, base.__name__, None) is base]
        for member, value in own.items():
            if member.startswith('_') and member != '__del__':
                continue
            entries[f'{qualified}.{member}'] = None
            if isinstance(value, type):
                add_class(f'{qualified}.{member}', value)
        for member, value in own.items():  # exported enum values: instances of a nested enum
            nested = type(value)
            if not member.startswith('_') and own.get(nested.__name__) is nested:
                entries[f'{qualified}.{member}'] = ('=', int(value))

    for name in dir(module):
        if name.startswith('_'):
            continue
        value = getattr(module, name)
        if isinstance(value, type):
            add_class(name, value)
        elif callable(value) and not isinstance(value, type(sys)):
            entries[name] = None
    return entries


def merge(per_ref):
    """Entries present at every ref; an enum value kept only where all refs agree."""
    common = set.intersection(*(set(e) for e in per_ref))
    merged = {}
    for entry in common:
        values = [e[entry] for e in per_ref]
        if entry.startswith('class '):
            merged[entry] = sorted(set.intersection(*(set(v) for v in values)))
        elif values[0] is None:
            merged[entry] = None
        else:
            found = {v[1] for v in values}
            merged[entry] = ('=', found.pop() if len(found) == 1 else None)
    return merged


def render(entries, header):
    lines = [f'# {line}' for line in header]
    for entry in sorted(entries, key=lambda e: (e.startswith('class '), e.removeprefix('class '))):
        value = entries[entry]
        if entry.startswith('class '):
            lines.append(entry + (f' : {", ".join(value)}' if value else ''))
        elif value is None:
            lines.append(entry)
        else:
            lines.append(f'{entry} = {"?" if value[1] is None else value[1]}')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--git-dir', help='a clone of NVIDIA/TensorRT (its .git)')
    source.add_argument('--module', help='an installed binding module to read instead, e.g. '
                                         'tensorrt_rtx')
    parser.add_argument('--refs', nargs='+', help='tags to read (with --git-dir), e.g. v11.0 v11.1')
    parser.add_argument('--label', required=True, help='e.g. 11.x')
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    if args.module:
        import importlib
        module = importlib.import_module(args.module)
        entries = extract_installed(module)
        Path(args.out).write_text(render(entries, installed_header(module, args.label)))
        print(f'{args.out}: {len(entries)} entries', file=sys.stderr)
        return 0
    if not args.refs:
        parser.error('--git-dir needs --refs')
    commits = [git(args.git_dir, 'rev-parse', f'{ref}^{{commit}}').strip() for ref in args.refs]
    merged = merge([extract(args.git_dir, ref) for ref in args.refs])
    header = [f'TensorRT {args.label} Python API names: the entries present at every one of',
              *[f'  NVIDIA/TensorRT {ref} (commit {commit})' for ref, commit in
                zip(args.refs, commits)],
              'read from python/src/**/*.cpp (pybind11 bindings) and include/NvInfer*.h,',
              'NvOnnxParser.h (enum values) by tools/extract_tensorrt_api.py; do not edit by hand.',
              'Lines: "class Name : Bases", "Class.member", "Enum.MEMBER = value", "function".']
    Path(args.out).write_text(render(merged, header))
    print(f'{args.out}: {len(merged)} entries', file=sys.stderr)
    return 0


def installed_header(module, label):
    return [f'TensorRT {label} Python API names: the installed {module.__name__} '
            f'{module.__version__},',
            'read by introspection (tools/extract_tensorrt_api.py --module); do not edit by hand.',
            'Lines: "class Name : Bases", "Class.member", "Enum.MEMBER = value", "function".']


if __name__ == '__main__':
    sys.exit(main())
