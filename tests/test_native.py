"""The compiled CPU loops (``backend="native"``: LSTM, Elman RNN, GRU): agreement with the
reference loops at sizes that exercise their vector tails, thread slices and ragged batches;
backend choice; and how a failed build is reported. Gradcheck and torch.nn parity run in the
shared tables (cells ``lstm_native``, ``rnn_tanh_native``, ``rnn_relu_native``, ``gru_native``
in ``layer_cases.py``)."""

from __future__ import annotations

import os
import platform
import stat

import pytest
import torch

import rnnkit
import rnnkit.native as native
from layer_cases import ours_kwargs

VALUE_TOL = {"rtol": 1e-5, "atol": 1e-5}
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture
def threads():
    """Restores torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _pair(hidden, **kwargs):
    ours_kwargs("lstm_native")  # skips where the library cannot be built (outside CI)
    ref = rnnkit.LSTM(7, hidden, backend="reference", **kwargs)
    nat = rnnkit.LSTM(7, hidden, backend="native", **kwargs)
    nat.load_state_dict(ref.state_dict())
    return ref, nat


def _run(layer, x, hx, lengths):
    x = x.detach().clone().requires_grad_()
    hx = tuple(h.detach().clone().requires_grad_() for h in hx)
    out, (h, c) = layer(x, hx, lengths=lengths)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out * weights).sum() + (h * 0.5).sum() - c.sum()
    grads = torch.autograd.grad(loss, [x, *hx, *layer.parameters()])
    return out, h, c, grads


@pytest.mark.parametrize("hidden", [16, 40, 67])  # one vector, vectors + tail, odd
@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("lengths", [None, [9, 2, 9, 5, 1, 7, 3, 9, 4]])
def test_native_matches_reference(hidden, num_threads, lengths, threads):
    torch.set_num_threads(num_threads)
    torch.manual_seed(hidden)
    ref, nat = _pair(hidden, num_layers=2, bidirectional=True)
    x = torch.randn(9, 9, 7)  # batch 9: register tiles of 4 rows and a tail of 1
    hx = (torch.randn(4, 9, hidden), torch.randn(4, 9, hidden))
    got, want = _run(nat, x, hx, lengths), _run(ref, x, hx, lengths)
    for name, a, b in zip(("output", "h_n", "c_n"), got[:3], want[:3]):
        torch.testing.assert_close(a, b, **VALUE_TOL, msg=lambda m, n=name: f"{n}: {m}")
    for k, (a, b) in enumerate(zip(got[3], want[3])):
        torch.testing.assert_close(a, b, **GRAD_TOL, msg=lambda m, k=k: f"gradient {k}: {m}")


@pytest.mark.parametrize("hidden", [16, 40])
@pytest.mark.parametrize("lengths", [None, [5, 2, 5, 1, 4, 3]])
@pytest.mark.parametrize("state", ["none", "zero h0, c0 with grad", "negative zero h0"])
def test_zero_initial_state(hidden, lengths, state, threads):
    """A zero h0 skips the first step's product, and an h0 that needs no gradient skips the
    product that gives ∂L/∂h0; neither may change a result."""
    torch.set_num_threads(2)
    torch.manual_seed(hidden)
    ref, nat = _pair(hidden)
    x = torch.randn(5, 6, 7)
    results = []
    for layer in (nat, ref):
        xg = x.clone().requires_grad_()
        inputs = [xg]
        if state == "none":
            hx = None
        else:
            h0 = torch.zeros(1, 6, hidden) * (-1.0 if state == "negative zero h0" else 1.0)
            c0 = torch.randn(1, 6, hidden, generator=torch.Generator().manual_seed(1))
            if state == "zero h0, c0 with grad":
                c0.requires_grad_()
                inputs.append(c0)
            else:
                h0.requires_grad_()
                inputs.append(h0)
            hx = (h0, c0)
        out, (h, c) = layer(xg, hx, lengths=lengths)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() + h.sum() - c.sum()
        results.append([out, h, c, *torch.autograd.grad(loss, [*inputs, *layer.parameters()])])
    for k, (a, b) in enumerate(zip(*results)):
        torch.testing.assert_close(a, b, **GRAD_TOL, msg=lambda m, k=k: f"result {k}: {m}")


def test_backward_skips_dh0_only_when_told():
    ours_kwargs("lstm_native")
    from rnnkit.native import library
    from rnnkit.native.lstm import _backward, _forward

    gen = torch.Generator().manual_seed(3)
    steps, batch, hidden = 4, 3, 32
    gates = torch.randn(steps, batch, 4 * hidden, generator=gen)
    h0, c0, dh_n, dc_n = torch.randn(4, batch, hidden, generator=gen).unbind(0)
    w_hh = torch.randn(4 * hidden, hidden, generator=gen) * 0.3
    dout = torch.randn(steps, batch, hidden, generator=gen)
    sizes = torch.tensor([3, 3, 2, 1], dtype=torch.int64)
    _, cells = _forward(library(), gates, h0, c0, w_hh, sizes, True)
    results = []
    for need in (True, False):
        dpre = torch.zeros_like(gates)
        dh0, dc0 = _backward(library(), gates, cells, c0, w_hh, dout, dh_n, dc_n, sizes, dpre,
                             need_dh0=need)
        results.append((dh0, dc0, dpre))
    assert results[1][0] is None
    want_dh0 = results[0][2][0] @ w_hh  # every row runs at step 0
    torch.testing.assert_close(results[0][0], want_dh0, **VALUE_TOL)
    for a, b in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _run_one_state(layer, x, hx, lengths):  # the Elman RNN's and the GRU's: one state tensor
    x = x.detach().clone().requires_grad_()
    inputs = [x]
    if hx is not None:
        hx = hx.detach().clone().requires_grad_()
        inputs.append(hx)
    out, h = layer(x, hx, lengths=lengths)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out * weights).sum() + (h * 0.5).sum()
    return out, h, torch.autograd.grad(loss, [*inputs, *layer.parameters()])


ONE_STATE = {  # the native-loop cells with one state tensor: class and its extra kwargs
    "rnn_tanh": (rnnkit.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, {"nonlinearity": "relu"}),
    "gru": (rnnkit.GRU, {}),
    "gru_no_bias": (rnnkit.GRU, {"bias": False}),
}


@pytest.mark.parametrize("cell", list(ONE_STATE))
@pytest.mark.parametrize("hidden", [16, 40, 67, 130])  # one vector, tails, odd, past one tile
@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("lengths", [None, [9, 2, 9, 5, 1, 7, 3, 9, 4]])
def test_native_elman_and_gru_match_reference(cell, hidden, num_threads, lengths, threads):
    ours_kwargs("gru_native")  # skips where the library cannot be built (outside CI)
    torch.set_num_threads(num_threads)
    torch.manual_seed(hidden)
    cls, extra = ONE_STATE[cell]
    ref = cls(7, hidden, num_layers=2, bidirectional=True, backend="reference", **extra)
    nat = cls(7, hidden, num_layers=2, bidirectional=True, backend="native", **extra)
    nat.load_state_dict(ref.state_dict())
    x = torch.randn(9, 9, 7)  # batch 9: register tiles of 4 rows and a tail of 1
    for hx in (torch.randn(4, 9, hidden), None):  # given, and zero (the first product skipped)
        got, want = _run_one_state(nat, x, hx, lengths), _run_one_state(ref, x, hx, lengths)
        for name, a, b in zip(("output", "h_n"), got[:2], want[:2]):
            torch.testing.assert_close(a, b, **VALUE_TOL, msg=lambda m, n=name: f"{n}: {m}")
        for k, (a, b) in enumerate(zip(got[2], want[2])):
            torch.testing.assert_close(a, b, **GRAD_TOL, msg=lambda m, k=k: f"gradient {k}: {m}")


def test_elman_backward_skips_dh0_only_when_told():
    ours_kwargs("rnn_tanh_native")
    from rnnkit.native import elman, library

    gen = torch.Generator().manual_seed(4)
    steps, batch, hidden = 4, 3, 20
    xp = torch.randn(steps, batch, hidden, generator=gen)
    h0, dh_n = torch.randn(2, batch, hidden, generator=gen).unbind(0)
    w_hh = torch.randn(hidden, hidden, generator=gen) * 0.3
    dout = torch.randn(steps, batch, hidden, generator=gen)
    sizes = torch.tensor([3, 3, 2, 1], dtype=torch.int64)
    out = elman._forward(library(), xp, h0, w_hh, sizes, True, False)
    results = []
    for need in (True, False):
        dpre = torch.zeros_like(out)
        dh0 = elman._backward(library(), out, w_hh, dout, dh_n, sizes, dpre, False, need)
        results.append((dh0, dpre))
    assert results[1][0] is None
    torch.testing.assert_close(results[0][0], results[0][1][0] @ w_hh, **VALUE_TOL)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


def test_thread_count_does_not_change_results(threads):
    ours_kwargs("lstm_native")
    torch.manual_seed(0)
    layer = rnnkit.LSTM(7, 48, backend="native")
    x = torch.randn(6, 5, 7)
    outs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        outs.append(layer(x)[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)


def test_auto_picks_native_on_the_cpu_where_it_serves():
    ours_kwargs("lstm_native")
    x = torch.randn(3, 2, 4)
    assert rnnkit.LSTM(4, 8)._resolve_backend(x) == "native"
    assert rnnkit.RNN(4, 8)._resolve_backend(x) == "native"
    assert rnnkit.RNN(4, 8, nonlinearity="relu")._resolve_backend(x.double()) == "native"
    assert rnnkit.GRU(4, 8)._resolve_backend(x) == "native"
    assert rnnkit.RNN(4, 8)._resolve_backend(x.bfloat16()) == "reference"
    assert rnnkit.GRU(4, 8)._resolve_backend(x.bfloat16()) == "reference"
    assert rnnkit.LSTM(4, 8, proj_size=2)._resolve_backend(x) == "reference"
    assert rnnkit.LSTM(4, 8)._resolve_backend(x.bfloat16()) == "reference"


@pytest.mark.parametrize(
    "make,x,words",
    [
        (lambda: rnnkit.GRU(4, 8, backend="native", dtype=torch.bfloat16),
         torch.randn(3, 2, 4, dtype=torch.bfloat16), "float32 or float64"),
        (lambda: rnnkit.RNN(4, 8, backend="native", dtype=torch.bfloat16),
         torch.randn(3, 2, 4, dtype=torch.bfloat16), "float32 or float64"),
        (lambda: rnnkit.LSTM(4, 8, proj_size=2, backend="native"), torch.randn(3, 2, 4),
         "proj_size"),
        (lambda: rnnkit.LSTM(4, 8, backend="native", dtype=torch.bfloat16),
         torch.randn(3, 2, 4, dtype=torch.bfloat16), "float32 or float64"),
    ],
)
def test_native_refuses_what_it_cannot_serve(make, x, words):
    with pytest.raises(ValueError, match="backend='native'") as info:
        make()(x)
    assert words in str(info.value)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty cache and a forgotten library; the real one is loaded again afterwards."""
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNKIT_NATIVE", raising=False)  # each test sets what it needs
    native._load.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    native._load.cache_clear()


def test_disabled_by_environment(fresh_build, monkeypatch):
    monkeypatch.setenv("RNNKIT_NATIVE", "0")
    assert native.library() is None
    assert native.problem() == "disabled by RNNKIT_NATIVE=0"
    assert rnnkit.LSTM(4, 8)._resolve_backend(torch.randn(3, 2, 4)) == "reference"
    with pytest.raises(ValueError, match="RNNKIT_NATIVE=0"):
        rnnkit.LSTM(4, 8, backend="native")(torch.randn(3, 2, 4))


def test_no_compiler_is_reported(fresh_build, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert native.library() is None
    assert "no C++ compiler" in native.problem()


def test_failed_compile_is_reported_and_leaves_nothing(fresh_build, monkeypatch):
    broken = fresh_build / "broken-c++"
    broken.write_text("#!/bin/sh\necho 'lstm.cpp:1: error: no luck' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(broken))
    assert native.library() is None
    assert "failed to compile lstm.cpp" in native.problem()
    assert "no luck" in native.problem()
    leftovers = [p for p in (fresh_build / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.fixture
def copying_compiler(fresh_build, monkeypatch):
    """A stand-in for the C++ compiler that copies the library this session already built to
    its ``-o`` target, and counts its builds: the cache tests below check where libraries go
    and when they are rebuilt, which needs no real compile (8 s each here);
    ``test_the_avx2_build_agrees`` and the session's own build compile for real."""
    native._load.cache_clear()
    monkeypatch.delenv("RNNKIT_CACHE_DIR")
    ours_kwargs("lstm_native")  # skips where nothing can be built (unless CI requires it)
    real = native._build()  # the session's library (built once, or found in its cache)
    log = fresh_build / "builds.log"
    script = fresh_build / "copying-c++"
    script.write_text(f"""#!/bin/sh
[ "$1" = --version ] && {{ echo copying-c++ 1; exit 0; }}
while [ $# -gt 1 ]; do
  if [ "$1" = -o ]; then echo "$2" >> '{log}'; exec cp '{real}' "$2"; fi
  shift
done
exit 1
""")
    script.chmod(0o755)
    monkeypatch.setenv("CXX", str(script))
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(fresh_build / "cache"))
    native._load.cache_clear()
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def test_built_library_is_reused(copying_compiler):
    first = native._build()
    assert copying_compiler() == 1
    stamp = os.stat(first).st_mtime_ns
    native._load.cache_clear()
    assert native._build() == first
    assert os.stat(first).st_mtime_ns == stamp and copying_compiler() == 1
    assert native.library() is not None and native.problem() is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9, 7), (2, 1, 1, 1, 1), (130, 9, 33, 65, 129)])
def test_one_pass_weight_gradients(shape, dtype, threads):
    """dW_ih, dW_hh and the bias gradient in one pass, against the two products and the sum:
    column and row edges, and more than one 1024-row block along T·B (130 × 9 rows)."""
    ours_kwargs("lstm_native")
    from rnnkit.native.lstm import weight_grads

    steps, batch, hidden, inputs, proj = shape
    gen = torch.Generator().manual_seed(steps)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    dpre, x = make(steps, batch, 4 * hidden), make(steps, batch, inputs)
    h0, out = make(batch, proj), make(steps, batch, proj)
    rows = dpre.reshape(-1, 4 * hidden).t()
    h_prev = torch.cat([h0.unsqueeze(0), out[:-1]]).reshape(-1, proj)
    want = (rows @ x.reshape(-1, inputs), rows @ h_prev, rows.sum(1))
    tol = {"rtol": 1e-5, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for count in (1, 2, 3):
        torch.set_num_threads(count)
        for got, expected in zip(weight_grads(dpre, x, h0, out), want):
            torch.testing.assert_close(got, expected, **tol)


@pytest.mark.parametrize("gates", [6, 70])  # a last strip of 2 rows; and one past a 64-row block
def test_one_pass_weight_gradients_of_any_row_count(gates, threads):
    """The library's weight gradients take any number of gate rows, not only 4H."""
    ours_kwargs("lstm_native")
    from rnnkit.native.lstm import weight_grads

    gen = torch.Generator().manual_seed(gates)
    dpre, x, out = (torch.randn(4, 3, n, generator=gen) for n in (gates, 5, 2))
    h0 = torch.randn(3, 2, generator=gen)
    rows = dpre.reshape(-1, gates).t()
    h_prev = torch.cat([h0.unsqueeze(0), out[:-1]]).reshape(-1, 2)
    want = (rows @ x.reshape(-1, 5), rows @ h_prev, rows.sum(1))
    for count in (1, 2):
        torch.set_num_threads(count)
        for got, expected in zip(weight_grads(dpre, x, h0, out), want):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _has_avx512() -> bool:
    return "avx512f" in native._cpu()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_the_avx512_path_compiles():
    """On a CPU without AVX-512 the session's library is the 32-byte-vector path (4 × 2 tiles),
    and the 64-byte one cannot run: it must still compile (templates instantiated, the tile's
    register-budget static_assert). On an AVX-512 CPU test_the_avx2_build_agrees runs both."""
    import subprocess

    if _has_avx512():
        pytest.skip("this CPU has AVX-512: test_the_avx2_build_agrees runs both paths")
    done = subprocess.run(
        [native._compiler(), "-march=x86-64-v4", "-std=c++17", "-fopenmp", "-fsyntax-only",
         str(native.SOURCE)], capture_output=True, text=True)
    if done.returncode != 0 and any(k in done.stderr.lower() for k in ("x86-64-v4", "openmp")):
        pytest.skip(f"this compiler cannot build it so: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_the_avx2_build_agrees(tmp_path):
    """The code path for CPUs without AVX-512 (32-byte vectors, 4 × 2 tiles), built here with
    -march=x86-64-v3, against the library this machine uses (the AVX-512 path where the CPU has
    it): forward, backward and the weight gradients, on a ragged batch with vector tails."""
    ours_kwargs("lstm_native")
    import ctypes
    import subprocess

    from rnnkit.native.lstm import _backward, _forward, self_check

    if not _has_avx512():
        pytest.skip("no AVX-512 here: the session's own library is the AVX2 path")
    cxx = native._compiler()
    target = tmp_path / "avx2.so"
    done = subprocess.run(
        [cxx, "-O3", "-march=x86-64-v3", "-std=c++17", "-shared", "-fPIC", "-fopenmp",
         "-o", str(target), str(native.SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this compiler cannot target x86-64-v3: {done.stderr.strip()[:200]}")
    avx2 = ctypes.CDLL(str(target))
    native._declare(avx2)
    assert self_check(avx2) is None
    gen = torch.Generator().manual_seed(5)
    steps, batch, hidden = 9, 7, 37
    xp = torch.randn(steps, batch, 4 * hidden, generator=gen)
    h0, c0, dh_n, dc_n = torch.randn(4, batch, hidden, generator=gen).unbind(0)
    w_hh = torch.randn(4 * hidden, hidden, generator=gen) * 0.3
    dout = torch.randn(steps, batch, hidden, generator=gen)
    sizes = torch.tensor([7, 7, 7, 6, 6, 4, 4, 2, 1], dtype=torch.int64)
    results = []
    for lib in (native.library(), avx2):
        gates = xp.clone()
        out, cells = _forward(lib, gates, h0, c0, w_hh, sizes, True)
        dpre = torch.zeros_like(xp)
        dh0, dc0 = _backward(lib, gates, cells, c0, w_hh, dout, dh_n, dc_n, sizes, dpre)
        grads = [torch.empty(4 * hidden, n) for n in (hidden, hidden)] + [torch.empty(4 * hidden)]
        status = lib.rnnkit_weight_grads_f32(
            dpre.data_ptr(), steps * batch, 4 * hidden, out.data_ptr(), hidden, h0.data_ptr(),
            out.data_ptr(), batch, hidden, *(g.data_ptr() for g in grads), 2)
        assert status == 0
        results.append([gates, out, cells, dpre, dh0, dc0, *grads])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    from rnnkit.native import elman, gru

    assert elman.self_check(avx2) is None and gru.self_check(avx2) is None
    results = []
    b_hn = torch.randn(hidden, generator=gen)
    for lib in (native.library(), avx2):
        gates, hn_lin, out = gru._forward(lib, xp[..., : 3 * hidden].clone(), h0,
                                          w_hh[: 3 * hidden], b_hn, sizes, True)
        results.append([gates, hn_lin, out])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for relu in (False, True):
        results = []
        for lib in (native.library(), avx2):
            out = elman._forward(lib, xp[..., :hidden], h0, w_hh[:hidden], sizes, True, relu)
            dpre = torch.zeros_like(out)
            dh0 = elman._backward(lib, out, w_hh[:hidden], dout, dh_n, sizes, dpre, relu)
            results.append([out, dpre, dh0])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_mismatched_buffers_are_refused_before_any_raw_read():
    ours_kwargs("lstm_native")
    from rnnkit.native import library
    from rnnkit.native.lstm import _forward

    xp = torch.randn(3, 2, 8)
    h0 = torch.zeros(2, 2, dtype=torch.float64)  # float64 beside float32: would read wrong bytes
    with pytest.raises(TypeError, match="float32 or all in float64"):
        _forward(library(), xp, h0, h0, torch.zeros(8, 2), torch.tensor([2, 2, 2]), False)


def test_another_cpu_gets_its_own_build(copying_compiler, monkeypatch):
    """A cache shared by machines of different kinds (a network home folder) never hands one
    CPU the ``-march=native`` library built for another: the CPU is part of the build's key."""
    first = native._build()
    assert native._build() == first and copying_compiler() == 1
    cpu = native._cpu()
    assert "flags" in cpu or "Features" in cpu or not os.path.exists("/proc/cpuinfo")
    monkeypatch.setattr(native, "_cpu", lambda: cpu + " another kind")
    other = native._build()
    assert other != first and other.parent.parent == first.parent.parent
    assert copying_compiler() == 2 and first.exists()


def test_read_only_cache_falls_back_to_the_temporary_directory(fresh_build, copying_compiler,
                                                               monkeypatch):
    blocked = fresh_build / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(fresh_build / "tmp"))
    path = native._build()
    assert str(path).startswith(str(fresh_build / "tmp"))


def test_a_cache_folder_others_can_write_is_refused(fresh_build, copying_compiler,
                                                    monkeypatch):
    """Code is loaded from the cache: a folder writable by others, a symbolic link, or a folder
    of another user (a planted library) is refused; a library whose recorded hash differs is
    rebuilt (issue 24, item 14)."""
    cache = fresh_build / "shared-cache"
    cache.mkdir(mode=0o777)
    os.chmod(cache, 0o777)
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(cache))
    with pytest.raises(RuntimeError, match="writable by other users"):
        native._build()
    os.chmod(cache, 0o700)
    path = native._build()
    record = path.with_name(path.name + ".sha256")
    assert record.read_text().strip() == native._digest(path)
    stamp = path.stat().st_mtime_ns
    record.write_text("0" * 64)  # not what was built here: rebuilt, not loaded
    rebuilt = native._build()
    assert rebuilt == path and path.stat().st_mtime_ns != stamp and copying_compiler() == 2
    link = fresh_build / "link"
    link.symlink_to(cache, target_is_directory=True)
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(link))
    with pytest.raises(RuntimeError, match="symbolic link"):
        native._build()
    if os.getuid() == 0:  # root can hand the folder to another user, as a planted one would be
        os.chown(cache, 12345, 12345)
        monkeypatch.setenv("RNNKIT_CACHE_DIR", str(cache))
        with pytest.raises(RuntimeError, match="belongs to another user"):
            native._build()
        os.chown(cache, 0, 0)
