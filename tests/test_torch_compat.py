"""PyTorch's own test entries for its six recurrent modules, run against rnnkit's (issue 24,
item 6).

``torch.testing._internal.common_modules.module_db`` is what PyTorch's ``test_modules.py``
iterates over: for each of ``RNN``, ``LSTM``, ``GRU`` and their cells, its constructor
arguments and forward inputs (and its error inputs). Here every entry builds the torch.nn module
and rnnkit's with the same weights, and compares outputs, input and parameter gradients and
gradients of gradients; every error input must raise the error type torch.nn raises. The test
sources are those of the installed torch. What does not hold is listed in ``KNOWN`` with its
reason (nothing today).
"""

from __future__ import annotations

import pytest
import torch

import rnnkit

common_modules = pytest.importorskip("torch.testing._internal.common_modules",
                                     reason="torch's test helpers need expecttest (test extra)")

NAMES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
INFOS = [m for m in common_modules.module_db
         if m.module_cls.__name__ in NAMES and m.module_cls.__module__.startswith("torch.nn")]
KNOWN: dict[str, str] = {}  # "LSTM[3]": why it cannot hold


def _cases():
    for info in INFOS:
        inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                         requires_grad=True, training=True)
        for index, module_input in enumerate(inputs):
            yield pytest.param(info, module_input, id=f"{info.module_cls.__name__}[{index}]")


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _tensors(item)]
    return []


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, tuple | list):
        return type(value)(_clone(item) for item in value)
    return value


def _run(module, forward_input):
    args = _clone(forward_input.args)
    kwargs = _clone(forward_input.kwargs)
    outputs = _tensors(module(*args, **kwargs))
    leaves = [t for t in _tensors(args) + _tensors(list(kwargs.values())) if t.requires_grad]
    wrt = leaves + [p for p in module.parameters()]
    total = sum((o * torch.linspace(0.5, 1.5, o.numel(), dtype=o.dtype).view_as(o)).sum()
                for o in outputs)
    grads = torch.autograd.grad(total, wrt, create_graph=True, allow_unused=True)
    second = sum((g.pow(2).sum() for g in grads if g is not None),
                 torch.zeros((), dtype=total.dtype))
    seconds = torch.autograd.grad(second, wrt, allow_unused=True)
    return outputs, grads, seconds


def _same(got, want, what):
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        if w is None or g is None:
            assert (w is None or not w.abs().sum()) and (g is None or not g.abs().sum()), what
            continue
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9, msg=what)


@pytest.mark.parametrize("info, module_input", list(_cases()))
def test_pytorch_module_entry(info, module_input, request):
    if request.node.callspec.id in KNOWN:
        pytest.skip(KNOWN[request.node.callspec.id])
    torch.manual_seed(0)
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    theirs = info.module_cls(*args, **kwargs).double()
    ours = getattr(rnnkit, info.module_cls.__name__)(*args, **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    want = _run(theirs, module_input.forward_input)
    got = _run(ours, module_input.forward_input)
    for name, g, w in zip(("outputs", "gradients", "gradients of gradients"), got, want,
                          strict=True):
        _same(g, w, name)


def _error_cases():
    for info in INFOS:
        if info.module_error_inputs_func is None:
            continue
        errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float64,
                                               requires_grad=False, training=True)
        for index, error in enumerate(errors):
            yield pytest.param(info, error, id=f"{info.module_cls.__name__}-error[{index}]")


@pytest.mark.parametrize("info, error", list(_error_cases()))
def test_pytorch_error_entry_raises_the_same_type(info, error):
    module_input = error.module_error_input
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    cls = getattr(rnnkit, info.module_cls.__name__)
    with pytest.raises(error.error_type):
        module = cls(*args, **kwargs).double()
        module(*module_input.forward_input.args, **module_input.forward_input.kwargs)


def _noncontiguous(value):
    """The same values in memory that is not contiguous (as test_modules' test does)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return value
        doubled = torch.repeat_interleave(value.detach(), 2, dim=-1)[..., ::2]
        return doubled.requires_grad_(value.requires_grad)
    if isinstance(value, tuple | list):
        return type(value)(_noncontiguous(item) for item in value)
    return value


@pytest.mark.parametrize("info, module_input", list(_cases()))
def test_pytorch_entry_non_contiguous_factory_kwargs_and_pickle(info, module_input, tmp_path):
    """The other checks test_modules.py makes of every entry: non-contiguous inputs give the
    same results, dtype= in the constructor is honoured, and the module survives a pickle
    round trip (torch.save / torch.load) with the same outputs."""
    args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
    cls = getattr(rnnkit, info.module_cls.__name__)
    module = cls(*args, **kwargs, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in module.parameters())
    forward = module_input.forward_input
    want = _tensors(module(*_clone(forward.args), **_clone(forward.kwargs)))
    got = _tensors(module(*_noncontiguous(forward.args), **_noncontiguous(forward.kwargs)))
    _same(got, want, "non-contiguous input")
    path = tmp_path / "module.pt"
    torch.save(module, path)
    again = torch.load(path, weights_only=False)
    _same(_tensors(again(*_clone(forward.args), **_clone(forward.kwargs))), want, "pickled")
