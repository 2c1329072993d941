"""Read an mmengine-format config file (what mmdet's configs are) as data, without running it.

mmengine's Config.fromfile executes a `.py` config: anything in it runs, an `import os` or a
`__import__("os").system(...)` too. The kit needs a few numbers from the model and the test
pipeline, and mmdet's configs are data: literals, `dict(...)`, lists and tuples, names bound
earlier in the file, `_base_` files merged into one another. ConfigReader evaluates exactly that
from the syntax tree (`ast`), with mmengine's rules:

* `_base_` (a path or a list of them, relative to the file) is read first; bases may not share
  a key; the file's own values are merged into them: a dict merges key by key unless it sets
  `_delete_=True`, anything else replaces; the file can read the merged bases as `_base_.name`;
* `{{_base_.name}}` (text) takes that base value, `{{ fileDirname }}`, `{{ fileBasename }}`,
  `{{ fileBasenameNoExtension }}`, `{{ fileExtname }}` and `{{$VAR:default}}` are replaced in the
  text first, names starting with `__` are dropped, and `.json` configs are read with `json`.

Anything else (an import, a function call other than dict/list/tuple, a comprehension, an `if`)
is refused in one line that names the construct and its line; so is arithmetic that fails (`1/0`)
and a value past the size caps below (`[0] * 10 ** 9`, a list of a million references to a
million-character string). Messages quote the file's source, shortened, never a value.
"""

import ast
import copy
import json
import os
import re
import reprlib
from pathlib import Path

from .errors import UserError

BASE_KEY, DELETE_KEY = '_base_', '_delete_'
_CONSTRUCTORS = {'dict': dict, 'list': list, 'tuple': tuple}
# Size caps, so that a small hostile file cannot take minutes or gigabytes to read. Sizes are
# counted as a tree (tree_size: a string one per character, a list or dict one plus its items,
# a shared reference every time it appears), which is what walking the config costs.
_LARGEST_SEQUENCE = 1_000_000   # a value built by + or *: larger is refused before it is built
_LARGEST_CONFIG = 2_000_000     # all of one file's values, and what {{_base_.x}} copies into it
_LARGEST_INTEGER_BITS = 4096    # 10 ** 1233: enough for any config, no 10 ** 10 ** 10 hang
_DEEPEST = 200                  # nested expressions (a config's values nest a few); deeper: refused
_BASE_PLACEHOLDER = '\x00_base_.'   # {{_base_.x}} in the text becomes this string, then the value
_WORDS = {  # ast node -> what the message calls it
    'Import': 'an import statement', 'ImportFrom': 'an import statement',
    'FunctionDef': 'a function definition', 'AsyncFunctionDef': 'a function definition',
    'ClassDef': 'a class definition', 'If': 'an if statement', 'For': 'a for loop',
    'While': 'a while loop', 'With': 'a with block (mmengine\'s lazy-import format)',
    'Try': 'a try block', 'Delete': 'a del statement', 'AugAssign': 'an augmented assignment',
    'AnnAssign': 'an annotated assignment', 'Global': 'a global statement',
    'Lambda': 'a lambda', 'ListComp': 'a list comprehension', 'DictComp': 'a dict comprehension',
    'SetComp': 'a set comprehension', 'GeneratorExp': 'a generator expression',
    'IfExp': 'a conditional expression', 'Compare': 'a comparison', 'BoolOp': 'and/or',
    'NamedExpr': 'an assignment expression', 'Await': 'await', 'Yield': 'yield',
    'Set': 'a set', 'Starred': 'unpacking with *',
}


def _refusal(path, node, what):
    return UserError(f'{path}:{getattr(node, "lineno", "?")}: {what} is not read: the kit reads '
                     'a config as data, without running it (literals, dict(...), lists, tuples, '
                     'names set earlier in the file, _base_ files); write the value out')


def shown(value):
    """A value in a message: its repr, shortened (a config's value may be a megabyte long)."""
    try:
        return _SHORT_REPR.repr(value)
    except ValueError:  # an int past Python's 4300-digit str() limit
        return f'a {type(value).__name__}'


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 2, 40, 40
_SHORT_REPR.maxlong, _SHORT_REPR.maxlist, _SHORT_REPR.maxtuple, _SHORT_REPR.maxdict = 40, 4, 4, 4


class TreeSizes:
    """tree_size of values, remembered per container object (kept alive here, so that its id
    stays its own): a list of a million references to one list costs a million steps once."""

    def __init__(self):
        self.known = {}

    def __call__(self, value):
        if isinstance(value, str):
            return max(len(value), 1)
        if not isinstance(value, (list, tuple, dict)):
            return 1
        known = self.known.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        items = (x for pair in value.items() for x in pair) if isinstance(value, dict) else value
        size = 1 + sum(self(item) for item in items)
        self.known[id(value)] = (value, size)
        return size


class _Evaluator:
    """Values of the expressions of one file, from its names and its merged bases."""

    def __init__(self, path, names, sizes=None):
        self.path, self.names = path, names
        self.sizes = sizes or TreeSizes()
        self.depth = 0

    def refuse(self, node, what=None):
        return _refusal(self.path, node, what or _WORDS.get(type(node).__name__,
                                                            f'a {type(node).__name__} expression'))

    def __call__(self, node):
        method = getattr(self, '_' + type(node).__name__, None)
        if method is None:
            raise self.refuse(node)
        # Nesting has its own limit, below Python's recursion limit: that limit is whatever the
        # process set (torch.compile raises it), so a file refused in one run was read in another.
        if self.depth >= _DEEPEST:
            raise RecursionError(f'more than {_DEEPEST} nested expressions')
        self.depth += 1
        try:
            value = method(node)
        finally:
            self.depth -= 1
        if self.sizes(value) > _LARGEST_CONFIG:  # a literal of names that are large already
            raise self.refuse(node, f'a value of more than {_LARGEST_CONFIG:,} elements')
        return value

    def _Constant(self, node):
        return node.value

    def _Name(self, node):
        if node.id not in self.names:
            raise _refusal(self.path, node, f'the name {node.id!r}, not set earlier in the file,')
        return self.names[node.id]

    def _List(self, node):
        return list(self._items(node.elts))

    def _Tuple(self, node):
        return tuple(self._items(node.elts))

    def _items(self, elements):
        for element in elements:
            if isinstance(element, ast.Starred):
                value = self(element.value)
                if not isinstance(value, (list, tuple)):
                    raise self.refuse(element, 'unpacking with * of something not a list')
                yield from value
            else:
                yield self(element)

    def _Dict(self, node):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                out.update(self._mapping(value))
            else:
                out[self._key(key)] = self(value)
        return out

    def _key(self, node):
        key = self(node)
        if not isinstance(key, (str, int, float, bool, tuple, type(None))):
            raise self.refuse(node, 'a dict key that is not a string or a number')
        return key

    def _mapping(self, node):
        value = self(node)
        if not isinstance(value, dict):
            raise self.refuse(node, 'unpacking with ** of something not a dict')
        return value

    def _Call(self, node):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _CONSTRUCTORS or name in self.names:
            raise self.refuse(node, f'a call of {_shortened(node.func)}()')
        if name == 'dict':
            if len(node.args) > 1:
                raise self.refuse(node, 'dict() with more than one positional argument')
            out = dict(self._mapping(node.args[0])) if node.args else {}
            for keyword in node.keywords:
                if keyword.arg is None:
                    out.update(self._mapping(keyword.value))
                else:
                    out[keyword.arg] = self(keyword.value)
            return out
        if node.keywords or len(node.args) > 1:
            raise self.refuse(node, f'{name}() with keywords or several arguments')
        value = self(node.args[0]) if node.args else ()
        if not isinstance(value, (list, tuple, str, dict)):
            raise self.refuse(node, f'{name}() of something not a list, tuple, string or dict')
        return _CONSTRUCTORS[name](value)

    def _Attribute(self, node):
        value = self(node.value)
        if not isinstance(value, dict):  # mmengine's ConfigDict: attributes are its keys
            raise self.refuse(node, f'the attribute .{node.attr} of something not a dict')
        if node.attr not in value:
            raise _refusal(self.path, node, f'.{node.attr}, a key its dict does not have,')
        return value[node.attr]

    def _Subscript(self, node):
        value, index = self(node.value), self(node.slice)
        if not isinstance(value, (dict, list, tuple, str)):
            raise self.refuse(node, 'indexing something not a dict, list, tuple or string')
        try:
            return value[index]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            raise _refusal(self.path, node, f'the index {_shortened(node.slice)}, which its '
                                            'value does not have,') from None

    def _Slice(self, node):
        return slice(*(None if part is None else self(part)
                       for part in (node.lower, node.upper, node.step)))

    def _UnaryOp(self, node):
        value = self(node.operand)
        if isinstance(node.op, (ast.USub, ast.UAdd)) and _is_number(value):
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node.op, ast.Not):
            return not value
        raise self.refuse(node, f'the operator {type(node.op).__name__} on {type(value).__name__}')

    def _BinOp(self, node):
        left, right = self(node.left), self(node.right)
        try:
            return self._arithmetic(node, left, right)
        except (ArithmeticError, ValueError) as exc:  # 1/0, 2.0 ** 10000
            raise self.refuse(node, f'the arithmetic {_shortened(node)}, which fails '
                                    f'({type(exc).__name__}),') from None

    def _arithmetic(self, node, left, right):
        op = node.op
        numbers = _is_number(left) and _is_number(right)
        integers = numbers and isinstance(left, int) and isinstance(right, int)
        if isinstance(op, ast.Pow) and numbers:
            if integers and right > 0 and max(left.bit_length(), 1) * right > _LARGEST_INTEGER_BITS:
                raise self.refuse(node, 'a power this large')
            return left ** right
        if isinstance(op, (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod)) and numbers:
            return _ARITHMETIC[type(op)](left, right)
        if isinstance(op, ast.Add) and (numbers or type(left) is type(right)
                                        and isinstance(left, (str, list, tuple))):
            if not numbers and self.sizes(left) + self.sizes(right) > _LARGEST_SEQUENCE:
                raise self.refuse(node, 'a sequence this long')
            return left + right
        if isinstance(op, ast.Mult):
            if integers and left.bit_length() + right.bit_length() > _LARGEST_INTEGER_BITS:
                raise self.refuse(node, 'a number this large')
            if numbers:
                return left * right
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) \
                    and not isinstance(count, bool):
                # the tree size, not the length: [s] * 10 ** 6 of a long string s is that long
                each = self.sizes(sequence) - (0 if isinstance(sequence, str) else 1)
                if each * max(count, 0) > _LARGEST_SEQUENCE:
                    raise self.refuse(node, 'a sequence this long')
                return sequence * count
        raise self.refuse(node, f'the operator {type(op).__name__} on {type(left).__name__} and '
                                f'{type(right).__name__}')

    def _JoinedStr(self, node):  # f'{data_root}annotations/': plain fields only
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
                continue
            field = self(value.value)
            if value.conversion != -1 or value.format_spec is not None \
                    or not isinstance(field, (str, int, float)):
                raise self.refuse(value, 'an f-string field with a format or conversion')
            parts.append(str(field))
        return ''.join(parts)


_ARITHMETIC = {ast.Sub: lambda a, b: a - b, ast.Div: lambda a, b: a / b,
               ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ConfigReader:
    """path -> the config's variables as plain dicts, lists and tuples (what mmengine's
    `Config.fromfile(path).to_dict()` gives for a config that is data)."""

    def read(self, path):
        return self._read(Path(path).absolute(), ())

    def _read(self, path, chain):
        if path in chain:
            raise UserError(f'{path}: it is its own _base_ (through {chain[-1].name})')
        if not path.is_file():
            where = f' (a _base_ of {chain[-1]})' if chain else ''
            raise UserError(f'config file {path} not found{where}')
        if path.suffix not in ('.py', '.json'):
            raise UserError(f'{path}: a config must be a .py or .json file')
        try:
            text = path.read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f'cannot read config {path}: {exc}') from None
        text = self._substitute_text(path, text)
        if path.suffix == '.json':
            try:
                names = json.loads(text)
            except ValueError as exc:
                raise UserError(f'{path}: not valid JSON ({exc})') from None
            if not isinstance(names, dict):
                raise UserError(f'{path}: a JSON config must be an object')
            return self._merge_with_bases(path, names, names.pop(BASE_KEY, []), chain, None)
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as exc:
            raise UserError(f'{path}:{exc.lineno}: not valid Python ({exc.msg})') from None
        except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
            raise UserError(f'{path}: not valid Python ({exc or type(exc).__name__})') from None
        statements = [s for s in tree.body if not _is_docstring(s)]
        base_files = []
        for statement in statements:
            if _assigns(statement, BASE_KEY):
                base_files = _Evaluator(path, {})(statement.value)
                break
        return self._merge_with_bases(path, None, base_files, chain, statements)

    def _merge_with_bases(self, path, names, base_files, chain, statements):
        base_files = base_files if isinstance(base_files, list) else [base_files]
        bases = {}
        for base_file in base_files:
            if not isinstance(base_file, str):
                raise UserError(f'{path}: _base_ must name config files, got '
                                f'{shown(base_file)}')
            if '::' in base_file:
                raise UserError(f'{path}: the _base_ {shown(base_file)} is in an installed package '
                                '(mmdet::...), which the kit does not read: copy that file '
                                'beside this one and name it by its path')
            base = self._read(path.parent / base_file, chain + (path,))
            shared = sorted(bases.keys() & base.keys())
            if shared:
                raise UserError(f'{path}: its _base_ files both set {", ".join(shared)} '
                                '(mmengine refuses that too)')
            bases.update(base)
        if names is None:
            names = self._evaluate(path, statements, bases)
        names = _BaseValues(path, bases)(names)
        names.pop(BASE_KEY, None)
        names.pop('_deprecation_', None)
        merged = _merge(path, names, bases)
        return {key: value for key, value in merged.items() if not key.startswith('__')}

    @staticmethod
    def _evaluate(path, statements, bases):
        names, total = {}, 0
        evaluate = _Evaluator(path, names)
        for statement in statements:
            if _assigns(statement, BASE_KEY):
                continue
            if isinstance(statement, ast.Pass):
                continue
            if isinstance(statement, ast.Expr):
                raise evaluate.refuse(statement, f'the statement {_shortened(statement)}')
            if not isinstance(statement, ast.Assign):
                raise evaluate.refuse(statement, _WORDS.get(
                    type(statement).__name__, f'a {type(statement).__name__} statement'))
            for target in statement.targets:
                if not isinstance(target, ast.Name):
                    raise evaluate.refuse(statement, f'the assignment to {_shortened(target)}')
            names[BASE_KEY] = bases  # readable as _base_.x, never kept as a value
            try:
                value = evaluate(statement.value)
            except RecursionError:
                raise evaluate.refuse(statement, 'an expression nested this deeply') from None
            del names[BASE_KEY]
            total += evaluate.sizes(value) * len(statement.targets)
            if total > _LARGEST_CONFIG:
                raise evaluate.refuse(statement, f'a config of more than {_LARGEST_CONFIG:,} '
                                                 'elements in all')
            for target in statement.targets:
                names[target.id] = value
        return names

    @staticmethod
    def _substitute_text(path, text):
        """mmengine's text substitutions, made before the file is parsed."""
        predefined = dict(fileDirname=str(path.parent), fileBasename=path.name,
                          fileBasenameNoExtension=path.stem, fileExtname=path.suffix)
        for key, value in predefined.items():
            text = re.sub(r'\{\{\s*' + key + r'\s*\}\}', value.replace('\\', '/'), text)

        def environment(found):
            value = os.environ.get(found[1], found[2])
            if not value:
                raise UserError(f'{path}: the environment variable {found[1]} is not set and '
                                'the config gives no default')
            return value
        text = re.sub(r'\{\{[\'"]?\s*\$(\w+)\s*:\s*(\S*?)\s*[\'"]?\}\}', environment, text)
        return re.sub(r'\{\{\s*' + BASE_KEY + r'\.([\w.]+)\s*\}\}',
                      lambda found: json.dumps(_BASE_PLACEHOLDER + found[1]), text)


def _shortened(node, width=40):
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= width else text[:width - 3] + '...'


def _is_docstring(statement):
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _assigns(statement, name):
    return isinstance(statement, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == name for target in statement.targets)


class _BaseValues:
    """Each placeholder string left by {{_base_.a.b}} -> a copy of that base value, with the
    sizes of the values walked and copied counted against _LARGEST_CONFIG: a hundred
    placeholders of one large base value are refused, not copied a hundred times."""

    def __init__(self, path, bases):
        self.path, self.bases, self.sizes, self.walked = path, bases, TreeSizes(), 0

    def __call__(self, value):
        self.walked += 1
        if self.walked > _LARGEST_CONFIG:
            raise UserError(f'{self.path}: more than {_LARGEST_CONFIG:,} elements in all with '
                            'its {{_base_.x}} values: the kit refuses a config this large')
        if isinstance(value, str) and value.startswith(_BASE_PLACEHOLDER):
            return self._base_value(value[len(_BASE_PLACEHOLDER):])
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self(v) for v in value)
        return value

    def _base_value(self, dotted):
        found = self.bases
        for key in dotted.split('.'):
            if not isinstance(found, dict) or key not in found:
                raise UserError(f'{self.path}: {{{{_base_.{dotted}}}}} names nothing its _base_ '
                                'files set')
            found = found[key]
        self.walked += self.sizes(found)
        if self.walked > _LARGEST_CONFIG:
            raise UserError(f'{self.path}: more than {_LARGEST_CONFIG:,} elements in all with '
                            'its {{_base_.x}} values: the kit refuses a config this large')
        return copy.deepcopy(found)


def _merge(path, values, bases):
    """mmengine's Config._merge_a_into_b: `values` over a copy of `bases`."""
    out = dict(bases)
    for key, value in values.items():
        if isinstance(value, dict) and key in out and not value.pop(DELETE_KEY, False):
            if not isinstance(out[key], dict):
                raise UserError(f'{path}: {key} is a dict here but not in its _base_: set '
                                f'{DELETE_KEY}=True in it to replace the base value')
            out[key] = _merge(path, value, out[key])
        else:
            out[key] = value
    return out


def read_config(path):
    return ConfigReader().read(path)
