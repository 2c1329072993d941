"""The tritonserver that nvidia-pytriton ships, on a model repository, started and stopped cleanly.

PyTriton's `Triton` launches the server binary with its libraries and the Python-backend stub
for this interpreter's version; here it runs the kit's repository (repository.py) instead of
bind()-ing a callable. What the kit adds:

* The stub links `libpython3.X.so` by name, so the dynamic linker takes the system's copy. Under
  an interpreter whose own libpython is another patch release of 3.X (pyenv, conda) the two
  disagree inside the standard library and every model fails with "'_thread.RLock' object has no
  attribute '_recursion_count'" (PyTriton issue #51). `python_library_first` puts this
  interpreter's LIBDIR first on LD_LIBRARY_PATH for the server and its stubs.
* Startup problems become one UserError: a port in use, or a model that did not load (Triton's
  own reason, from its log file).
* `stop()` ends tritonserver and, with it, every stub process; a Ctrl-C or SIGTERM on serve.py
  arrives as KeyboardInterrupt (common.run_main) and the caller stops the server then.
"""

import contextlib
import os
import re
import socket
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

from . import contract, require
from ..errors import UserError

EXIT_TIMEOUT_SECONDS = 10  # how long tritonserver waits for requests in flight when stopped
_LOAD_FAILURE = re.compile(r"failed to load '(?P<model>[^']+)'[^:]*: (?P<reason>.*)")


def python_library_dir():
    """The folder of this interpreter's shared libpython, or None (a static build has none)."""
    if not sysconfig.get_config_var('Py_ENABLE_SHARED'):
        return None
    folder = sysconfig.get_config_var('LIBDIR')
    name = sysconfig.get_config_var('INSTSONAME') or sysconfig.get_config_var('LDLIBRARY')
    if folder and name and (Path(folder) / name).is_file():
        return folder
    return None


@contextlib.contextmanager
def python_library_first(environ=os.environ):
    """LD_LIBRARY_PATH starts with this interpreter's libpython folder inside the block (PyTriton
    copies the environment when it starts tritonserver, whose stubs inherit it)."""
    folder = python_library_dir()
    before = environ.get('LD_LIBRARY_PATH')
    if folder:
        rest = [p for p in (before or '').split(os.pathsep) if p and p != folder]
        environ['LD_LIBRARY_PATH'] = os.pathsep.join([folder] + rest)
    try:
        yield folder
    finally:
        if before is None:
            environ.pop('LD_LIBRARY_PATH', None)
        else:
            environ['LD_LIBRARY_PATH'] = before


def free_ports(count, host='127.0.0.1'):
    """`count` distinct TCP ports nothing listens on now (the benchmark's and the tests' own
    servers)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass
class Endpoints:
    host: str = '0.0.0.0'
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    def check_free(self):
        """A port something else holds would make tritonserver exit while PyTriton waits two
        minutes for it: refuse it up front (the flags are serve.py's)."""
        for port, flag in ((self.http_port, '--port'), (self.grpc_port, '--grpc_port'),
                           (self.metrics_port, '--metrics_port')):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, port))
                except OSError as exc:
                    raise UserError(f'cannot listen on {self.host}:{port} ({flag}): '
                                    f'{exc.strerror}; pass a free port with {flag}') from None

    @property
    def local_host(self):
        return '127.0.0.1' if self.host in ('0.0.0.0', '') else self.host

    @property
    def http_url(self):
        return f'{self.local_host}:{self.http_port}'


class BundledServer:
    """tritonserver (from nvidia-pytriton) serving `repository`; a context manager."""

    def __init__(self, repository, workspace, endpoints, log_file, log_advice=None):
        """`log_advice`: what error messages say about the log instead of its path (serve.py's
        default log lives in a temporary folder that is gone once it exits)."""
        self.repository, self.workspace = Path(repository), Path(workspace)
        self.endpoints, self.log_file = endpoints, Path(log_file)
        self.log_advice = log_advice or f'the server log: {self.log_file}'
        self.triton = None

    def start(self):
        require('pytriton', 'serving')
        from pytriton.triton import Triton, TritonConfig
        self.endpoints.check_free()
        config = TritonConfig(
            model_repository=self.repository, http_address=self.endpoints.host,
            http_port=self.endpoints.http_port, grpc_address=self.endpoints.host,
            grpc_port=self.endpoints.grpc_port, metrics_port=self.endpoints.metrics_port,
            log_file=self.log_file, exit_timeout_secs=EXIT_TIMEOUT_SECONDS,
            # A model that fails to load must not take the server down before its reason is
            # read; the HTTP port opens only once loading is over, so readiness then means
            # the model's own (checked below).
            exit_on_error=False, strict_readiness=False)
        try:
            with python_library_first():
                self.triton = Triton(config=config, workspace=self.workspace)
                self.triton.run()
            self._check_loaded()
        except TimeoutError:
            self.stop()
            raise UserError(f'the Triton server did not become ready ({self.log_advice})'
                            ) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _check_loaded(self):
        import tritonclient.http as httpclient
        with contextlib.closing(httpclient.InferenceServerClient(self.endpoints.http_url)) as c:
            index = c.get_model_repository_index(headers=self.access_headers)
        failed = {entry['name']: entry.get('reason', '') for entry in index
                  if entry.get('state') != 'READY'}
        if failed:
            name, reason = next(iter(failed.items()))
            reason = self._logged_reason(name) or reason or 'no reason given'
            self.stop()
            raise UserError(f'Triton could not load model {name}: {reason} ({self.log_advice})')

    def _logged_reason(self, model):
        with contextlib.suppress(OSError):
            for line in self.log_file.read_text(errors='replace').splitlines():
                match = _LOAD_FAILURE.search(line)
                if match and match['model'] == model:
                    return match['reason'].strip().rstrip('"')
        return None

    @property
    def access_token(self):
        """The token PyTriton protects the statistics, model-repository, shared-memory, trace and
        logging endpoints with (header triton-access-token)."""
        return self.triton.get_access_token()

    @property
    def access_headers(self):
        return {'triton-access-token': self.access_token}

    def wait(self, poll_seconds=1.0):
        """Block while the server runs; UserError if it stops on its own. A signal's
        KeyboardInterrupt (common.run_main) comes through: the caller stops the server."""
        pause = threading.Event()
        while self.triton.is_alive():
            pause.wait(poll_seconds)  # interrupted at once by Ctrl-C / SIGTERM
        raise UserError(f'the Triton server stopped on its own ({self.log_advice})')

    def stop(self):
        """SIGINT to tritonserver (it unloads the models: their stub processes end), wait for it
        (PyTriton kills it after 30 s), remove PyTriton's workspace."""
        if self.triton is not None:
            self.triton.stop()
            self.triton = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def model_url(endpoints):
    return f'http://{endpoints.local_host}:{endpoints.http_port}/v2/models/{contract.MODEL}'
