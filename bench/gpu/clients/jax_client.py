"""JAX / XLA (default preallocation, or XLA_PYTHON_CLIENT_PREALLOCATE=false as the runner sets).
Usage: python3 jax_client.py GIB"""

import time

START = time.perf_counter()
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from _common import N, P, chunks_from_argv, report, timed  # noqa: E402

k = chunks_from_argv()
dev = jax.devices("gpu")[0]


@jax.jit
def fill(i):
    return (((jnp.arange(N, dtype=jnp.int32) % P) * 37 + (11 * i).astype(jnp.int32)) % P).astype(jnp.int32)


def _comb(a, b):
    return (a + b) % P


comb = jax.jit(_comb, donate_argnums=(0,))
total = jax.jit(lambda x: jnp.sum(x, dtype=jnp.int64))


def compute(k):
    """The checksum over k chunks (see _common.py)."""
    xs = [fill(jnp.int32(i)) for i in range(k)]
    for i in range(1, k):
        xs[i] = comb(xs[i], xs[i - 1])
    return sum(int(total(x)) for x in xs)


checksum, best_s, times = timed(compute, k)
stats = dev.memory_stats() or {}
report("jax", checksum, best_s, START,
       {"xla_stats": {key: stats.get(key) for key in ("bytes_limit", "peak_bytes_in_use", "bytes_reserved", "pool_bytes")}}, times)
