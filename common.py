"""What the top-level scripts share: error handling at the edge, and argument helpers.

The scripts (export.py, build_engine.py, inference.py, prepare.py) are thin: they parse
arguments and call into the `centernet` package. `run_main` turns the package's UserError, and a
stop by Ctrl-C (SIGINT) or SIGTERM, into one `error:` line on stderr and exit code 2, without a
traceback; every output file is written atomically (centernet.fileio), so a stop leaves none half
written.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading

# Make `centernet` and `coco_labels` importable however the script is started.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from centernet.errors import EXIT_USER_ERROR, UserError, running_script  # noqa: E402
from centernet.report import printable  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              'centernet_r18_8xb16-crop512-140e_coco.py')


class Stopped(KeyboardInterrupt):
    """SIGTERM or Ctrl-C, raised where the main thread is, so it unwinds as Ctrl-C does: every
    `finally` and atomic write cleans up on the way out. `signal_name` is how the error line
    names it: 'SIGTERM', or 'Ctrl-C (SIGINT)'."""

    def __init__(self, signal_name, on_accept=None):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self._on_accept = on_accept

    def accept(self):
        """The stop is the command's normal end (serve.py: SIGTERM is how a server is stopped),
        and the caller has caught it to shut down: from now on no reminder is sent, and no
        SIGTERM raises, so the shutdown runs to its end and run_main returns the command's own
        exit code."""
        if self._on_accept is not None:
            self._on_accept()


class _StickyStop:
    """SIGTERM or Ctrl-C (SIGINT) -> Stopped in the main thread, raised again until it reaches
    run_main.

    A library can catch the first raise and carry on: numpy's lazy import of numpy.random,
    interrupted inside a compiled module's initialisation, lost it, and the run went on timing
    for minutes (about one stop in five, tests/test_bad_inputs.py); a Ctrl-C a library swallows
    is lost the same way. So after the first signal a reminder thread sends it again to the
    main thread alone every REMIND_SECONDS (a real signal, so that a blocking call there
    returns to Python; library threads never see it), and the handler
    raises again unless the stop is already unwinding: code in a `finally` or an `__exit__`
    sees it in sys.exc_info(), and is left to finish its clean-up, as it is for a second signal.
    A command whose normal end is a stop (serve.py) catches it and calls Stopped.accept, which
    sets `done` as run_main's return does: the reminders end, and its shutdown, however long, is
    not cut short. A SIGINT that the process was started ignoring (`nohup`, `&` in a script)
    stays ignored.
    """

    REMIND_SECONDS = 0.5

    def __init__(self):
        self.stop = None
        self.done = threading.Event()

    def __enter__(self):
        self.main_thread = threading.main_thread().ident
        self.previous = signal.signal(signal.SIGTERM, self.handle)
        self.previous_int = signal.getsignal(signal.SIGINT)
        if self.previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, self.handle)
        self.previous_unraisable = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def _unraisable(self, unraisable):
        # A stop that landed in a __del__ or a weakref callback (importlib's module-lock one,
        # during an export) cannot be raised there, and Python would print 'Exception ignored'
        # with a traceback: drop it quietly, as the reminder raises it again where it can.
        if isinstance(unraisable.exc_value, Stopped):
            return
        self.previous_unraisable(unraisable)

    def __exit__(self, *exc):
        self.done.set()
        if self.stop is not None:
            self.reminder.join()
        signal.signal(signal.SIGTERM, self.previous)
        if self.previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, self.previous_int)
        sys.unraisablehook = self.previous_unraisable

    def handle(self, signum, _frame):
        if self.done.is_set():
            # run_main is returning (a stop a library swallowed, then a normal end): a reminder
            # landing while __exit__ joins the reminder must not raise out of its `finally`
            return
        if self.stop is None:
            self.signum = signum
            self.stop = Stopped('Ctrl-C (SIGINT)' if signum == signal.SIGINT
                                else signal.Signals(signum).name)
            self.reminder = threading.Thread(target=self._remind, name='stop-reminder',
                                             daemon=True)
            self.reminder.start()
        elif _interrupt_in_chain(sys.exc_info()[1]) is not None:
            return  # the stop is unwinding: a second signal must not cut the clean-up short
        raise Stopped(self.stop.signal_name, on_accept=self.done.set)  # done: see Stopped.accept

    def _remind(self):
        while not self.done.wait(self.REMIND_SECONDS):
            signal.pthread_kill(self.main_thread, self.signum)


def _interrupt_in_chain(exc):
    """The KeyboardInterrupt (Ctrl-C or Stopped) that `exc` was raised from, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _exit_stopped(exc):
    # a plain KeyboardInterrupt: Python's own SIGINT handler (run_main outside the main thread)
    how = exc.signal_name if isinstance(exc, Stopped) else 'Ctrl-C (SIGINT)'
    print(f'error: stopped by {how}: no partial output was written; run the command again '
          'to start over', file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def _printing_never_fails():
    """stdout escapes what its encoding cannot take (a file name that is not UTF-8, a non-ASCII
    one under LANG=C) instead of raising in the middle of a run, as stderr already does; and it
    flushes each line, so lines printed between progress-bar updates (on stderr) stay in order
    when both go to one log."""
    stream = sys.stdout
    if hasattr(stream, 'reconfigure'):
        try:
            stream.reconfigure(errors='backslashreplace', line_buffering=True)
        except (ValueError, OSError):  # closed or detached: leave it
            pass


def run_main(main, argv=None):
    """Run `main(argv)`; exit 0, its own code, or 2 with one `error:` line on stderr (UserError,
    Ctrl-C, SIGTERM)."""
    _printing_never_fails()
    in_main_thread = threading.current_thread() is threading.main_thread()
    stopping = _StickyStop() if in_main_thread else contextlib.nullcontext()
    stopping.__enter__()
    try:
        code = main(argv)
    except UserError as exc:
        # printable: a file name that is not UTF-8 shows as bad\xff.jpg, as stdout shows it,
        # not as Python's surrogate bad\udcff.jpg
        print(f'error: {printable(str(exc))}', file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as exc:
        _exit_stopped(exc)
    except Exception as exc:
        # A signal that lands inside code which wraps what it catches (a lazy import's
        # dataclass __set_name__ turns it into RuntimeError) is still that signal.
        stop = _interrupt_in_chain(exc)
        if stop is None:
            raise
        _exit_stopped(stop)
    finally:
        stopping.__exit__(None, None, None)
    sys.exit(code or 0)


def add_model_arguments(parser, title='model', cuda_graph_help=None):
    """The flags that choose and open the model, shared by inference.py and serve.py: both open
    it with centernet.backends.open_backend from these."""
    model = parser.add_argument_group(title)
    model.add_argument('--engine', metavar='MODEL',
                       help='the model file, whichever kind (the flag keeps the reference '
                            'project\'s name): a TensorRT engine .engine/.plan/.trt, an ONNX '
                            '.onnx (ONNX Runtime) or an mmdet checkpoint .pth/.pt (the PyTorch '
                            'model built from --cfg)')
    model.add_argument('--backend', default='auto',
                       choices=('auto', 'tensorrt', 'onnxruntime', 'torch'),
                       help='auto: from the model file\'s suffix')
    model.add_argument('--weight', metavar='CHECKPOINT',
                       help='mmdet checkpoint for the torch backend (instead of --engine X.pth)')
    model.add_argument('--cfg', default=DEFAULT_CONFIG, help='mmdet config, for --backend torch')
    model.add_argument('--device', help='torch backend device: cuda (default if present) or cpu')
    model.add_argument('--precision', choices=('fp16', 'fp32', 'int8'),
                       help='torch backend: fp16 on CUDA (default), fp32 on CPU; int8 is refused '
                            '(INT8 runs as a Q/DQ ONNX: export.py --precision int8)')
    model.add_argument('--threads', type=int, default=0,
                       help='ONNX Runtime intra-op threads (0: one per physical core)')
    model.add_argument('--cuda_graph', action='store_true',
                       help=cuda_graph_help or 'torch backend on CUDA: replay one CUDA graph per '
                                               'input shape')
    model.add_argument('--compile', metavar='MODE',
                       help='torch backend: torch.compile the network with MODE, "default" or '
                            '"max-autotune-no-cudagraphs" (default: off); "default" gives 1.9x '
                            'the FPS on an H200 after a compile of ~15 s')
    return model


def canonical_option(option):
    """'--skip-check' and '--skip_check' -> '--skip_check': one flag, two spellings."""
    return option[:2] + option[2:].replace('-', '_') if option.startswith('--') else option


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows every default that is not already in the text (none for unset options and
    switches), and one spelling of each flag (both are accepted); the epilog keeps its line
    breaks."""

    def _format_action_invocation(self, action):
        spellings = {}
        for option in action.option_strings:
            spellings.setdefault(canonical_option(option), option)
        if len(spellings) == len(action.option_strings):
            return super()._format_action_invocation(action)
        shown = argparse.Action(list(spellings.values()), action.dest, nargs=action.nargs,
                                metavar=action.metavar, help=action.help)
        return super()._format_action_invocation(shown)

    def _get_help_string(self, action):
        text = action.help or ''
        if ('default' in text.lower() or action.default in (None, argparse.SUPPRESS)
                or action.nargs == 0 or not action.option_strings):
            return text
        return text + ' (default: %(default)s)'


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults in --help, where every flag takes `_` and `-` alike
    (`--skip_check` is `--skip-check`), and whose on/off switches (store_true and store_false,
    such as --no-simplify) also accept the reference project's spelling `--flag True` /
    `--flag False` (and `--flag=false`). Under a script (scripts/*.sh, errors.running_script) a
    bad argument is one `error:` line that says where the script's extra arguments go."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        script = running_script()
        if not script:
            super().error(message)
        self.exit(EXIT_USER_ERROR, f'error: {self.prog}: {message} ({script} passes its extra '
                                   f'arguments to {self.prog}: python3 {self.prog} --help lists '
                                   'what it takes)\n')

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        known = {canonical_option(option): option for action in self._actions
                 for option in action.option_strings}
        switches = {option for action in self._actions if action.nargs == 0
                    and action.const in (True, False) for option in action.option_strings}
        argv = normalise_spellings(argv, known)
        return super().parse_known_args(normalise_switches(argv, switches), namespace)


def normalise_spellings(argv, known):
    """Each '--flag' (or '--flag=value') spelled with `-` where the parser has `_`, or the other
    way round, as the parser spells it; `known`: canonical_option -> the parser's spelling.
    Nothing after a bare '--' (the end of the options) is touched."""
    out = list(argv)
    for index, token in enumerate(argv):
        if token == '--':
            break
        name, equals, value = token.partition('=')
        spelled = known.get(canonical_option(name)) if name.startswith('--') else None
        if spelled and spelled != name:
            out[index] = spelled + equals + value
    return out


def normalise_switches(argv, switches):
    """['--perf_only', 'True'] -> ['--perf_only']; ['--perf_only', 'false'] -> []; a value that
    is neither true nor false is left for argparse to refuse."""
    out = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name, equals, value = token.partition('=')
        if name in switches:
            if not equals and index + 1 < len(argv) and _as_bool(argv[index + 1]) is not None:
                value, index = argv[index + 1], index + 1
            elif not equals:
                value = 'true'
            flag = _as_bool(value)
            if flag is None:
                out.append(token)  # argparse then says "ignored explicit argument"
            elif flag:
                out.append(name)
        else:
            out.append(token)
        index += 1
    return out


def _as_bool(value):
    lowered = value.lower()
    if lowered in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'n', 'off'):
        return False
    return None


def parse_shape(text):
    """'32x672x672' -> (32, 672, 672)."""
    try:
        parts = tuple(int(p) for p in text.lower().split('x'))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'expected BxHxW such as 1x512x672, got {text!r}')
    return parts
