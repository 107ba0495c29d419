"""Shared fixtures. Tests name their reference: ONNX Runtime, the onnx wheel's test data, a published table."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

# Under pytest-xdist (`make test` runs two workers, one per core) these are set before numpy, torch or numba
# load. One BLAS/OpenMP thread per worker: two workers each spinning two threads oversubscribe two cores. One
# numba cache per worker: numba updates a function's cache index by read, add, write, so two workers compiling
# one function for different signatures on a cold cache can leave an index naming the other's data file.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), ".pytest_cache", "numba", _WORKER))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402

# `@pytest.mark.xdist_group("processes")` marks the tests that must not run beside one another (`make test`
# uses --dist loadgroup): tests that start process pools, Ray or torch.distributed groups, measure a child's
# peak memory, or assert wall-clock bounds or timings. They run one after another on one worker while the other
# worker runs single-threaded tests.

ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
LIGHT = os.path.join(ONNX_DATA, "light")


def pytest_configure(config):
    import onnxruntime

    # A suite started in the background of a shell without job control (`sh -c 'make test &'`, some CI
    # runners) inherits SIGINT ignored, and Python then leaves Ctrl-C ignored, as POSIX asks of background
    # jobs: the Ctrl-C tests would test that convention, not graphmill's handling, and fail (a training loop's
    # DeferredInterrupt steps aside when Ctrl-C is not Python's). Runs in the controller and in every xdist
    # worker; the commands tests start inherit a handled SIGINT, which exec resets to the default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    onnxruntime.set_default_logger_severity(4)  # ORT's own error logs would drown the test output

    # The suite's temporary files go in one folder of its own, removed when the suite passes: a failing
    # optimize writes its reproducer to the temporary folder (as a user wants it), torch.distributed's agents
    # leave error files there, and a suite run left ~30 such folders in /tmp each time. Set in the controller;
    # xdist workers and every command a test starts inherit TMPDIR. A failed suite keeps it for inspection.
    # Of the folders failed suites left, the newest 2 are kept (with this run's, 3, as pytest keeps its last 3 base
    # temps); a folder whose suite is still running (its owner process alive) is never touched.
    if not _WORKER:
        import glob

        ended = [f for f in glob.glob(os.path.join(tempfile.gettempdir(), "graphmill-tests-*")) if not _running(f)]
        for old in sorted(ended, key=_mtime)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        # multiprocessing's own temporary folder stays outside: it is removed at exit, after this folder, and its
        # removal printed a FileNotFoundError traceback under the suite's summary
        import multiprocessing.util

        multiprocessing.util.get_temp_dir()
        config.graphmill_tmpdir = tempfile.mkdtemp(prefix="graphmill-tests-")
        with open(os.path.join(config.graphmill_tmpdir, ".owner"), "w") as f:
            f.write(str(os.getpid()))
        os.environ["TMPDIR"] = tempfile.tempdir = config.graphmill_tmpdir


def _running(folder: str) -> bool:
    """Whether the suite that made ``folder`` is still running: its ``.owner`` names a live process (a folder
    without one is an old suite's)."""
    from graphmill.util.processes import process_running

    try:
        with open(os.path.join(folder, ".owner")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):  # a suite starting beside this one has made its folder, not yet its .owner
        return time.time() - _mtime(folder) < 60
    return process_running(pid)


def _mtime(folder: str) -> float:
    """The folder's modification time; -1 once it is gone: a suite that passed beside this one removes its own
    folder, and ``os.path.getmtime`` of it between the glob and the sort stopped this suite before its first test
    (INTERNALERROR, an outside check running two suites at once)."""
    try:
        return os.path.getmtime(folder)
    except OSError:
        return -1.0


def pytest_sessionfinish(session, exitstatus):
    folder = getattr(session.config, "graphmill_tmpdir", None)
    if folder and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` the tests are spread one by one, except the tests of one module that use a
    module- or class-scoped fixture: those get the module as their xdist group, so the fixture is built once,
    on one worker, as in a serial run. Tests with an explicit ``xdist_group`` mark keep their own group."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        fixturedefs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(defs and defs[-1].scope in ("module", "class") for defs in fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def light_dir() -> str:
    return LIGHT


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def resnet18_graph():
    """The zoo's ResNet-18 (batch 1). Tests must copy it before mutating."""
    from graphmill.frontend import zoo

    return zoo.build("resnet18", batch=1)


@pytest.fixture(scope="session")
def two_linear_two_norm():
    """A torch module class: Linear -> LayerNorm -> Linear -> LayerNorm (8 features) with zero Linear biases. The
    TorchScript exporter stores the four zero vectors (a.bias, b.bias, n1.bias, n2.bias) once and the two ones
    vectors (n1.weight, n2.weight) once, the others as Identity of them: the case of deduplicated initializers
    that from_torch must keep distinct and to_torch must train separately. torch is imported only when asked."""
    nn = pytest.importorskip("torch").nn

    class TwoLinearTwoNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.n1, self.b, self.n2 = nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.LayerNorm(8)
            nn.init.zeros_(self.a.bias)
            nn.init.zeros_(self.b.bias)

        def forward(self, x):
            return self.n2(self.b(self.n1(self.a(x))))

    return TwoLinearTwoNorm


class _UnitCost:
    units = "cycles"

    def op_time(self, node, device=0):
        return 1.0

    def transfer_time(self, nbytes, src, dst):
        return 0.0

    def memory(self, node):
        return 0


@pytest.fixture
def unit_cost():
    """A pipeline partitioner's cost model in which every op takes one cycle, transfers are free and nothing
    takes memory: stage boundaries then depend on the graph's shape only, which the torch pipeline tests need
    (they compare pipelined with single-process training, not the partition)."""
    return _UnitCost()


def _sigint_state() -> tuple[bool, bool]:
    """Whether SIGINT is ignored and whether it is blocked in this process, as the kernel sees it
    (/proc/self/status), so that a change made by a C library (not through Python's ``signal``) shows too."""
    ignored = blocked = False
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("SigIgn:"):
                    ignored = bool(int(line.split()[1], 16) & (1 << (2 - 1)))
                elif line.startswith("SigBlk:"):
                    blocked = bool(int(line.split()[1], 16) & (1 << (2 - 1)))
    except OSError:  # not Linux
        pass
    return ignored, blocked


@pytest.fixture(autouse=True)
def _sigint_left_as_found():
    """A test must leave SIGINT as it found it: a process left ignoring (or blocking) SIGINT cannot be stopped
    with Ctrl-C, and every command it starts inherits that, so a later Ctrl-C test would fail far from the cause.
    Fails the test that changed it."""
    before = _sigint_state()
    yield
    after = _sigint_state()
    if after != before:
        pytest.fail(f"this test left SIGINT (ignored, blocked) = {after}, was {before}", pytrace=False)
