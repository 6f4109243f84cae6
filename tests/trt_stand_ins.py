"""Stand-ins for pycuda and TensorRT's builder that the TensorRT tests share: the device
memory of pycuda.driver as byte arrays, and a builder configuration that logs what it is
given. Imported by the test modules beside it (tests/ is on sys.path: its conftest.py is
not in a package), and by tests/test_kill.py's child processes."""

from __future__ import annotations

import itertools
from types import ModuleType, SimpleNamespace

import numpy as np


def fake_device_memory(log: list) -> tuple[ModuleType, dict]:
    """(pycuda.driver as far as dpedge's runtime uses it, its device memory): device memory
    is a dict of byte arrays by address, allocations logged as ("alloc", address, nbytes);
    page-locked host buffers are numpy arrays; a stream's synchronize is logged. The caller
    adds what its stand-in needs besides (events, the current device)."""
    memory: dict[int, np.ndarray] = {}
    addresses = itertools.count(4096, 4096)
    cuda = ModuleType("pycuda.driver")

    def mem_alloc(nbytes):
        address = next(addresses)
        memory[address] = np.zeros(nbytes, np.uint8)
        log.append(("alloc", address, nbytes))
        return address

    def memcpy_htod_async(device, host, stream):
        memory[int(device)][:] = np.frombuffer(np.ascontiguousarray(host).tobytes(), np.uint8)

    def memcpy_dtoh_async(host, device, stream):
        host[...] = np.frombuffer(memory[int(device)].tobytes(), host.dtype).reshape(host.shape)

    cuda.mem_alloc, cuda.pagelocked_empty = mem_alloc, lambda size, dtype: np.empty(size, dtype)
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    cuda.Stream = lambda: SimpleNamespace(handle=7, synchronize=lambda: log.append("synchronize"))
    return cuda, memory


def fake_builder_config(log: list) -> type:
    """tensorrt's IBuilderConfig as far as dpedge's builder uses it: the workspace and the
    flags it is given logged, a timing cache serialized as the bytes it was made from +
    b"+timings"."""

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            log.append(("workspace", size))

        def set_flag(self, flag):
            log.append(("flag", flag))

        def create_timing_cache(self, data):
            return SimpleNamespace(serialize=lambda: data + b"+timings")

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    return Config
