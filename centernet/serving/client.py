"""A served CenterNet seen from a client: image bytes in, the model's detections out.

`ServedDetector.detect_records` is inference.py --server's detection step: it sends each image
file's bytes as one request, at most `concurrency` in flight (Triton's dynamic batcher makes the
batches), and returns pipeline.Detections in record order, exactly what the local step
(pipeline.detect_records) returns, so the results, evaluation and record code is one.
"""

import json
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import contract, require
from ..errors import UserError

NETWORK_TIMEOUT_SECONDS = 600.0  # a first request may wait for a CPU server's whole batch
WANTED = ('boxes', 'scores', 'labels')


class Refused(Exception):
    """The server refused this request (HTTP 400): its reason, e.g. not a readable image."""


def server_address(text):
    """'localhost:8000' or 'http://localhost:8000' -> 'localhost:8000'."""
    address = text.split('://', 1)[-1].rstrip('/')
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise UserError(f'--server {text!r}: expected HOST:PORT of a Triton server\'s HTTP '
                        'endpoint, such as localhost:8000')
    return address


class ServedDetector:
    """The model `centernet` of the Triton server at `address` (its HTTP endpoint)."""

    def __init__(self, address, model=contract.MODEL):
        self.http = require('tritonclient.http', 'inference.py --server')
        from tritonclient.utils import InferenceServerException
        self.server_error = InferenceServerException
        self.address, self.model = server_address(address), model
        self._local = threading.local()
        self._clients, self._lock = [], threading.Lock()
        client = self._client()
        try:
            client.is_server_live()
        except Exception as exc:  # the connection's own errors: refused, reset, unknown host
            raise UserError(f'no Triton server answers at {self.address} ({type(exc).__name__}): '
                            'start one with serve.py --engine MODEL (docs/serving.md) or fix '
                            '--server HOST:PORT') from None
        try:
            config = client.get_model_config(model)
        except InferenceServerException as exc:
            raise UserError(f'the server at {self.address} has no model {model!r} ready '
                            f'({exc.message()}): serve the detector with serve.py') from None
        parameters = {key: value.get('string_value', '')
                      for key, value in config.get('parameters', {}).items()}
        if contract.CLASSES not in parameters:
            raise UserError(f'model {model!r} at {self.address} was not served by this kit (its '
                            f'config has no {contract.CLASSES}): serve it with serve.py')
        from ..config import CenterNetSpec
        self.classes = tuple(json.loads(parameters[contract.CLASSES]))
        self.topk = CenterNetSpec.from_dict(json.loads(parameters[contract.SPEC])).topk
        self.served = json.loads(parameters.get(contract.DESCRIBE, '{}'))
        self.max_batch = int(config.get('max_batch_size', 0))

    def _client(self):
        """One HTTP client per thread (tritonclient's are not shared between threads)."""
        client = getattr(self._local, 'client', None)
        if client is None:
            client = self.http.InferenceServerClient(
                self.address, connection_timeout=NETWORK_TIMEOUT_SECONDS,
                network_timeout=NETWORK_TIMEOUT_SECONDS)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self):
        """Close every thread's connection; a later request opens a new one."""
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
            self._local = threading.local()

    def detect(self, data):
        """(boxes (topk, 4), scores (topk,), labels (topk,)) of one encoded image; Refused with
        the server's reason for a request it refuses, UserError when the server fails."""
        payload = np.array([[data]], dtype=object)
        image = self.http.InferInput(contract.IMAGE, list(payload.shape), 'BYTES')
        image.set_data_from_numpy(payload)
        wanted = [self.http.InferRequestedOutput(name) for name in WANTED]
        try:
            result = self._client().infer(self.model, [image], outputs=wanted)
        except self.server_error as exc:
            if exc.status() == '400':
                raise Refused(exc.message().removeprefix('image: ')) from None
            raise UserError(f'the server at {self.address} failed: {exc.message()}') from None
        except (OSError, EOFError) as exc:  # connection refused or reset: the server went away
            raise UserError(f'lost the server at {self.address} ({type(exc).__name__}: {exc})'
                            ) from None
        return tuple(result.as_numpy(name)[0] for name in WANTED)

    def statistics(self, access_token):
        """What Triton counted for the model so far: requests answered, batches run, and the
        seconds its instances spent inside execute. The statistics endpoint is one PyTriton
        protects with the token serve.py prints."""
        stats = self._client().get_inference_statistics(self.model, headers={
            'triton-access-token': access_token})['model_stats'][0]
        compute = sum(b['compute_infer']['ns'] for b in stats.get('batch_stats', []))
        return dict(requests=stats['inference_count'], batches=stats['execution_count'],
                    compute_seconds=compute / 1e9)

    def describe(self):
        return dict(backend='server', server=self.address, model=self.model, served=self.served)

    def _detect_file(self, path):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return f'cannot read file ({exc.strerror or exc})'
        try:
            return self.detect(data)
        except Refused as exc:
            return str(exc)

    def detect_records(self, records, concurrency, skip_bad_images=False, progress=True,
                       estimate=False, timer=None):
        """Detections for `records` (dataset.ImageRecord), in record order, `concurrency`
        requests in flight; a refused image is handled as pipeline.detect_records handles a bad
        one (--skip_bad_images)."""
        from ..dataset import BadImage
        from ..pipeline import Detections, RunTimeEstimate, keep_bad_image
        from ..timing import StageTimer
        timer = timer if timer is not None else StageTimer()
        result = Detections.empty(len(records), self.topk)
        bar = tqdm(total=len(records), desc='detect (server)', unit='img', disable=not progress,
                   dynamic_ncols=True)
        if estimate:
            bar = RunTimeEstimate(bar, len(records))
        pool = ThreadPoolExecutor(concurrency, thread_name_prefix='request')
        pending = deque()

        def settle():
            record, future = pending.popleft()
            with timer.stage('server_wait'):
                outcome = future.result()
            if isinstance(outcome, str):
                keep_bad_image(result, BadImage(record.index, record.path, outcome),
                               skip_bad_images)
            else:
                index = record.index
                result.boxes[index], result.scores[index], result.labels[index] = outcome
                result.done[index] = True
            bar.update(1)

        start = time.perf_counter()
        try:
            for record in records:
                if len(pending) >= concurrency:
                    settle()
                pending.append((record, pool.submit(self._detect_file, record.path)))
            while pending:
                settle()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        result.seconds = time.perf_counter() - start
        return result
